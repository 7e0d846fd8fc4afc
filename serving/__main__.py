"""``python -m leadscore.serving``: start the scoring service (see :mod:`leadscore.serving.launch`)."""

from leadscore.serving.launch import main

if __name__ == "__main__":
    main()
