"""User commands that are not stages (``rnnpipe translate|generate|forecast|profile|report``).

Each module has ``main(argv) -> exit code`` and a library function beside it that
flows and tests call directly (a flow never goes through argv).
"""
