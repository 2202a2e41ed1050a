"""The kill rate per module of the last `make mutation` run, from mutmut's records in mutants/.

A mutant not checked yet (the run was stopped, or picked others with MUTANTS) is counted apart:
the rate is over the mutants checked. Survivors are listed by name: `mutmut show NAME` prints
the change, tests/mutation-survivors.md says which are equivalent and why.
"""

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

MUTANTS = Path(__file__).resolve().parent.parent / "mutants"
NOT_KILLED = ("survived", "no tests", "timeout", "suspicious", "segfault")


def main():
    records = sorted(MUTANTS.glob("memoryadmin/**/*.py.meta"))
    if not records:
        sys.exit("No mutation results: run `make mutation` first.")
    print(
        f"{'module':<42} {'checked':>8} {'killed':>7} {'rate':>6} {'survived':>9} {'no tests':>9} {'timeout':>8} {'unchecked':>10}"
    )
    survivors = []
    for record in records:
        exit_codes = json.loads(record.read_text())["exit_code_by_key"]
        if not exit_codes:
            continue
        statuses = Counter(status_by_exit_code[code] for code in exit_codes.values())
        unchecked = statuses.pop("not checked", 0)
        checked = sum(statuses.values())
        rate = f"{100 * statuses['killed'] / checked:.0f}%" if checked else "-"
        module = str(record.relative_to(MUTANTS)).removesuffix(".meta")
        print(
            f"{module:<42} {checked:>8} {statuses['killed']:>7} {rate:>6} {statuses['survived']:>9} "
            f"{statuses['no tests']:>9} {statuses['timeout']:>8} {unchecked:>10}"
        )
        survivors += [
            (name, status_by_exit_code[code])
            for name, code in exit_codes.items()
            if status_by_exit_code[code] in NOT_KILLED
        ]
    if survivors:
        print("\nNot killed (mutmut show NAME):")
        for name, status in survivors:
            print(f"  {status:<10} {name}")


if __name__ == "__main__":
    main()
