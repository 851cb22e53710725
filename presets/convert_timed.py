"""Converts the TIMED CSV files into the JSON presets shipped in `time_core/data/presets/`.

Usage:

    python presets/convert_timed.py /path/to/timed

where the folder holds `TIMED_test_set.csv`, `TIMED_test_set_filtered_SD14.csv`, `TIMED_validation_set.csv` and
`TIMED_gender_test_set.csv` as published with the paper's official code. Prompts are kept verbatim apart from stripping
surrounding whitespace. Every written file is loaded back with `time_core.presets.load_preset`.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from time_core.presets import NUM_PROMPTS, PRESETS_DIR, load_preset  # noqa: E402

CITATION = (
    'From TIMED, the benchmark of "Editing Implicit Assumptions in Text-to-Image Diffusion Models" '
    "(Orgad, Kawar, Belinkov, ICCV 2023), as published with the paper's official code "
    "(github.com/bahjat-kawar/time-diffusion); the upstream repository states no license."
)

EDIT_SETS = {
    "timed_test": (
        "TIMED_test_set.csv",
        147,
        "TIMED test set: 147 edits with 5 positive and 5 negative prompts each.",
    ),
    "timed_test_filtered_sd14": (
        "TIMED_test_set_filtered_SD14.csv",
        104,
        "TIMED test set filtered for SD v1.4: the 104 edits whose destination prompts unedited SD v1.4 renders "
        "(oracle >= 80%); the set of the paper's Table 2.",
    ),
    "timed_validation": (
        "TIMED_validation_set.csv",
        8,
        "TIMED validation set: 8 edits disjoint from the test set, for choosing hyper-parameters.",
    ),
}
GENDER_SET = ("timed_professions", "TIMED_gender_test_set.csv", 35)
GENDER_WORDS = ("female", "male")


def read_rows(path: Path, columns: list[str]) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != columns:
            raise ValueError(f"{path}: expected columns {columns}, got {reader.fieldnames}.")
        rows = [{key: value.strip() for key, value in row.items()} for row in reader]
    for i, row in enumerate(rows):
        for key, value in row.items():
            if not value:
                raise ValueError(f"{path}: row {i}: empty value in column {key!r}.")
    return rows


def edit_entry(row: dict[str, str]) -> dict:
    return {
        "source": row["old"],
        "destination": row["new"],
        "positives": [
            {"prompt": row[f"positive{k}"], "destination": row[f"gt{k}"]} for k in range(1, NUM_PROMPTS + 1)
        ],
        "negatives": [
            {"prompt": row[f"negative{k}"], "destination": row[f"gn{k}"]} for k in range(1, NUM_PROMPTS + 1)
        ],
    }


def debias_entry(row: dict[str, str]) -> dict:
    # `new` names the non-stereotypical gender, e.g. "a female developer"; the classes are its female/male wordings.
    words = row["new"].split(" ")
    if len(words) < 3 or words[1] not in GENDER_WORDS:
        raise ValueError(f"Expected a destination of the form 'a female X' or 'a male X', got {row['new']!r}.")
    classes = [" ".join([words[0], gender] + words[2:]) for gender in GENDER_WORDS]
    return {
        "source": row["old"],
        "destination": row["new"],
        "validation": row["validation"],
        "tests": [row[f"ex{k}"] for k in range(1, NUM_PROMPTS + 1)],
        "attributes": list(GENDER_WORDS),
        "classes": classes,
    }


def write(name: str, preset: dict) -> None:
    path = PRESETS_DIR / f"{name}.json"
    path.write_text(json.dumps(preset, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    loaded = load_preset(path)
    print(f"wrote {path} ({len(loaded.entries)} entries)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", type=Path, help="Folder holding the TIMED CSV files.")
    args = parser.parse_args()

    edit_columns = ["old", "new"]
    for k in range(1, NUM_PROMPTS + 1):
        edit_columns += [f"positive{k}", f"gt{k}"]
    for k in range(1, NUM_PROMPTS + 1):
        edit_columns += [f"negative{k}", f"gn{k}"]
    for name, (filename, expected, description) in EDIT_SETS.items():
        rows = read_rows(args.data_dir / filename, edit_columns)
        if len(rows) != expected:
            raise ValueError(f"{filename}: expected {expected} rows, got {len(rows)}.")
        preset = {
            "name": name,
            "description": f"{description} {CITATION}",
            "model": "sd",
            "kind": "edit",
            "entries": [edit_entry(row) for row in rows],
        }
        write(name, preset)

    name, filename, expected = GENDER_SET
    gender_columns = ["old", "new", "validation"] + [f"ex{k}" for k in range(1, NUM_PROMPTS + 1)]
    rows = read_rows(args.data_dir / filename, gender_columns)
    if len(rows) != expected:
        raise ValueError(f"{filename}: expected {expected} rows, got {len(rows)}.")
    preset = {
        "name": name,
        "description": (
            f"TIMED gender set: {expected} professions; the destination names the non-stereotypical gender and F_p "
            f"is the share of images classified as female. {CITATION}"
        ),
        "model": "sd",
        "kind": "debias",
        "entries": [debias_entry(row) for row in rows],
    }
    write(name, preset)


if __name__ == "__main__":
    main()
