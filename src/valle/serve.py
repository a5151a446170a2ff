"""`python -m valle.serve ckpt=model.pt`: the command lives in valle.cli.serve."""

if __name__ == "__main__":
    import sys

    from valle.cli.serve import main
    from valle.errors import exit_on_user_error

    exit_on_user_error(main)(sys.argv[1:])
