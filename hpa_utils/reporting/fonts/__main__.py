"""``python -m hpa_utils.reporting.fonts COLLECTION.ttc``: remake the embedded subset (see the package)."""

import sys

from hpa_utils.reporting.fonts import make_subset

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m hpa_utils.reporting.fonts /path/to/NotoSerifCJK-Regular.ttc")
    print(make_subset(sys.argv[1]))
