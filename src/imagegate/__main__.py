"""``python -m imagegate`` runs the CLI."""

from imagegate.cli import main

if __name__ == "__main__":
    main()
