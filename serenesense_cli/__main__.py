"""Allow ``python -m serenesense_cli``."""

from serenesense_cli.cli import main

if __name__ == "__main__":
    main()
