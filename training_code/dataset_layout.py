"""The dataset's layout and the file-list format: the one definition prep.py and the local demo read.

Layout (the public bucket s3://aft-vbi-pds/): `bin-images/<id>.jpg` is the photo and `metadata/<id>.json`
holds its item count as `EXPECTED_QUANTITY`.

File list (`--file-list`): the Udacity capstone's file_list.json (training_code/file_lists/), a JSON object
mapping a count to metadata paths, `{"1": ["data/metadata/100313.json", ...], ...}`. An id is a path's file
name without its suffix; the keys are not trusted (prep.py reads every count from the metadata). Anything
else, a plain JSON list of ids included, is rejected, by prep.py and the demo's pre-check alike.

Standard library only: the local runner imports it without torch or numpy.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

IMAGES_DIR = "bin-images"
METADATA_DIR = "metadata"
IMAGE_SUFFIX = ".jpg"
METADATA_SUFFIX = ".json"
COUNT_FIELD = "EXPECTED_QUANTITY"
LAYOUT = (
    f"a folder laid out like the bucket s3://aft-vbi-pds/: {IMAGES_DIR}/<id>{IMAGE_SUFFIX} and "
    f"{METADATA_DIR}/<id>{METADATA_SUFFIX} with {COUNT_FIELD}"
)
# prep.py's npy split folders (dataset.py reads them): the pixels and their labels
SPLIT_IMAGES_FILE = "images.npy"
SPLIT_LABELS_FILE = "labels.json"
# prep.py --auxiliary's photos whose count is outside the classes, a folder inside the train split (so that
# they travel with the train channel) in the same format; train.py trains on them as "fewer" / "more".
AUXILIARY_FOLDER = "auxiliary"


def is_auxiliary_count(count: int, classes: tuple[int, ...] | list[int]) -> bool:
    """Fewer items than the smallest class or more than the largest: a prep.py --auxiliary photo. A count
    between two classes (--classes 1,3) is neither and has no auxiliary target."""
    return count < classes[0] or count > classes[-1]


FILE_LIST_FORMAT = '{"<count>": ["data/metadata/<id>.json", ...], ...} (the Udacity file_list.json)'


class MetadataError(ValueError):
    """A metadata file without a usable count; the message says what it holds instead."""


class FileListError(ValueError):
    """A --file-list that cannot be used; the message names the file and the expected format."""


def image_key(image_id: str) -> str:
    return f"{IMAGES_DIR}/{image_id}{IMAGE_SUFFIX}"


def metadata_key(image_id: str) -> str:
    return f"{METADATA_DIR}/{image_id}{METADATA_SUFFIX}"


def id_of(path: str) -> str:
    """`data/metadata/100313.json` -> `100313` (also a key of either folder, or a bare file name)."""
    return PurePosixPath(path).stem


def count_from_metadata(data: bytes | str) -> int:
    """The integer EXPECTED_QUANTITY of one metadata file's content, else MetadataError."""
    try:
        count = json.loads(data)[COUNT_FIELD]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise MetadataError(f"no {COUNT_FIELD}") from None
    if not isinstance(count, int) or isinstance(count, bool):  # JSON true would pass as the count 1
        raise MetadataError(f"{COUNT_FIELD} is {count!r}")
    return count


def ids_in_file_list(content: object) -> list[str]:
    """The sorted, distinct ids of a parsed file list; ValueError when it is not one."""
    if not isinstance(content, dict) or not all(
        isinstance(paths, list) and all(isinstance(p, str) for p in paths) for paths in content.values()
    ):
        kind = "a JSON list" if isinstance(content, list) else f"a JSON {type(content).__name__}"
        raise ValueError(f"it holds {kind}, not an object of lists of metadata paths")
    ids = sorted({id_of(path) for paths in content.values() for path in paths})
    if not ids:
        raise ValueError("it lists no metadata paths")
    return ids


def read_file_list(path: str | Path) -> list[str]:
    """The ids a --file-list chooses, sorted and distinct; FileListError saying why it cannot be used."""
    problem = f"--file-list {path} cannot be read"
    expected = f"Expected JSON like {FILE_LIST_FORMAT}"
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise FileListError(f"{problem}: no such file. {expected}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise FileListError(f"{problem} ({error}). {expected}") from None
    try:
        return ids_in_file_list(json.loads(text))
    except json.JSONDecodeError as error:
        raise FileListError(f"{problem}: it is not valid JSON ({error}). {expected}") from None
    except ValueError as error:
        raise FileListError(f"{problem}: {error}. {expected}") from None
