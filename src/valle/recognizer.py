"""`python -m valle.recognizer data.root=SHARDS out=FILE`: the command lives in valle.cli.recognizer."""

if __name__ == "__main__":  # `python -m valle.recognizer`: the command itself lives in valle.cli.recognizer
    import sys

    from valle.cli.recognizer import main
    from valle.errors import exit_on_user_error

    exit_on_user_error(main)(sys.argv[1:])
