"""`python -m valle.voice make prompt=REF.wav out=VOICE.npz ...`: the command lives in valle.cli.voice."""

if __name__ == "__main__":  # `python -m valle.voice`: the command itself lives in valle.cli.voice
    import sys

    from valle.cli.voice import main
    from valle.errors import exit_on_user_error

    exit_on_user_error(main)(sys.argv[1:])
