"""`python -m valle.demo` (`make demo`): the command lives in valle.cli.demo."""

if __name__ == "__main__":
    import sys

    from valle.cli.demo import main
    from valle.errors import exit_on_user_error

    exit_on_user_error(main)(sys.argv[1:])
