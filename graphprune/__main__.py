import sys

try:  # Ctrl-C while the imports run is still a clean interrupt, not a traceback
    from graphprune.cli import entry
except KeyboardInterrupt:
    sys.stderr.write("graphprune: interrupted; nothing was written\n")
    sys.exit(130)

sys.exit(entry())
