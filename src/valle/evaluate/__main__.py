"""`python -m valle.evaluate hyp_dir=DIR ref_dir=DIR ...`: the command lives in valle.cli.evaluate."""

if __name__ == "__main__":
    import sys

    from valle.cli.evaluate import main
    from valle.errors import exit_on_user_error

    exit_on_user_error(main)(sys.argv[1:])
