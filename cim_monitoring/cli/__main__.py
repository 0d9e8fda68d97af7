"""``python -m cim_monitoring.cli``: the same as the ``cim-monitoring`` script."""

from cim_monitoring.cli import main

if __name__ == "__main__":
    main()
