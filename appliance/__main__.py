"""``python -m appliance``: the same command line as ``appliance``."""

from appliance.cli import main

main()
