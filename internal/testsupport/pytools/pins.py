"""Exit 0 if this interpreter has every pin of a requirements file.

    python3 pins.py requirements.txt

Otherwise exit 1, naming each distribution that is missing or at another
version. Only NAME[extras]==VERSION lines are understood: that is all the
file holds.
"""

import importlib.metadata
import re
import sys

wrong = []
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, version = line.split("==")
        name = re.sub(r"\[.*\]", "", name)
        try:
            found = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found = "none"
        if found != version:
            wrong.append(f"{name}=={version} (found {found})")
if wrong:
    sys.exit(f"{sys.executable} lacks " + ", ".join(wrong))
