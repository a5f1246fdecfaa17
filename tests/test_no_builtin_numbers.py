"""No builtin operating-point number appears in the package's code outside the published model
(issue 16): the supply, mid-rail and read-on volts of the builtin and sky130 operating points,
T_max and the token period live in the design files (netlists/designs/*.toml) and in
gcsim/hw/constants.py (PAPER), and everything else takes them from there.

Only NUMBER tokens count (Python's tokenize): comments, docstrings and strings, e.g. a label
"at V_in = 0.9 V", do not.
"""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gcsim"

# The published model: the one place these numbers may be written.
PUBLISHED = {"hw/constants.py"}

# Volts of the builtin/sky130 operating points (0.45 mid-rail, 0.9 supply and read-on, 1.8 the
# boosted write word line / sky130 supply), T_max (15 ns) and the token period (0.8 µs).
BUILTIN_NUMBERS = (0.45, 0.9, 1.8, 15e-9, 0.8e-6)

# (file under gcsim/, the stripped line) of uses that are not operating-point values. Keep it
# minimal; each entry says why it is not one.
ALLOWED = {
    # The 10 % / 50 % / 90 % points of a pulse's edge (10-90 % rise time): a fraction of the
    # pulse height, not a voltage.
    ("validate/waveforms.py", "lo, mid, hi = 0.1 * high, 0.5 * high, 0.9 * high"),
    # The accuracy plot's bars fill 90 % of their slot: a fraction of a bar width.
    ("accuracy/report.py",
     'ax.bar(x, r["accuracy"], width * 0.9, color=colors(j), alpha=0.35,'),
    ("accuracy/report.py", 'ax.bar(x, r["adapted_accuracy"], width * 0.45, color=colors(j))'),
    # Adam's moment decay rates (the transformer literature's 0.9, 0.98), not volts.
    ("accuracy/train.py", "lr=config.lr, betas=(0.9, 0.98))"),
}


def builtin_number(token: str) -> bool:
    try:
        value = float(token.replace("_", ""))
    except ValueError:      # complex or otherwise not a plain float literal
        return False
    return any(value == number for number in BUILTIN_NUMBERS)


def stray_numbers() -> list[tuple[str, int, str]]:
    """(file, line number, stripped line) of every builtin number outside the published model
    and the allow-list."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name in PUBLISHED:
            continue
        source = path.read_text()
        lines = source.splitlines()
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type != tokenize.NUMBER or not builtin_number(token.string):
                continue
            line = lines[token.start[0] - 1].strip()
            if (name, line) not in ALLOWED:
                found.append((name, token.start[0], line))
    return found


def test_no_builtin_number_outside_the_design_files_and_the_published_model():
    stray = stray_numbers()
    assert not stray, ("builtin operating-point numbers outside gcsim/hw/constants.py (take "
                       "them from the design, the operating point or PAPER):\n" + "\n".join(
                           f"  gcsim/{name}:{number}: {line}" for name, number, line in stray))


def test_every_allowed_entry_still_exists():
    """A stale allow-list entry would silently allow the line if it came back elsewhere."""
    for name, line in ALLOWED:
        lines = [text.strip() for text in (PACKAGE / name).read_text().splitlines()]
        assert line in lines, f"allow-list entry gcsim/{name}: {line!r} no longer in the file"


def test_the_check_sees_numbers_not_strings():
    source = 'x = 0.9  # 0.9 V\ny = "0.45"\nz = 15e-09\nw = 0.8e-6\n"""1.8"""\n'
    numbers = [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
               if t.type == tokenize.NUMBER and builtin_number(t.string)]
    assert numbers == ["0.9", "15e-09", "0.8e-6"]
