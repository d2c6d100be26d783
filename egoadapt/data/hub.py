"""`data.*` files from a Hugging Face Hub repo: `hf://datasets/OWNER/NAME[@REV]/path/in/repo`.

`hf://OWNER/NAME/...` (no type) is a dataset repo here, since `data.*` names data; an explicit
`hf://models/...` or `hf://spaces/...` is honoured. Files come through huggingface_hub's own
cache (`HF_HOME`, `HF_HUB_CACHE`, `HF_TOKEN`, `HF_HUB_OFFLINE` work as everywhere else):

- `data.annotations`, `data.answers`: the one file (`hf_hub_download`);
- `data.root`: a folder of the repo; only the frames and videos the loaded samples name are
  fetched (`snapshot_download` with `allow_patterns`), after the annotations are read.

The revision is resolved once per process, so every file of a run comes from one commit.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath
from typing import Any

from egoadapt.data.errors import DataError, Problem
from egoadapt.data.schema import Sample

PROTOCOL = "hf://"
FILE_KEYS = ("annotations", "answers")  # data.* keys that name one file; `root` names a folder


def is_hub(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PROTOCOL)


@dataclass(frozen=True)
class HubPath:
    uri: str
    repo_id: str
    repo_type: str
    revision: str | None
    path: str  # inside the repo, "" for its top


def parse(uri: str, field: str) -> HubPath:
    from huggingface_hub import constants
    from huggingface_hub.errors import HfUriError
    from huggingface_hub.utils import parse_hf_uri

    body = uri[len(PROTOCOL):]
    explicit = body.split("/", 1)[0] in constants.HF_URI_TYPE_PREFIXES
    try:
        parsed = parse_hf_uri(uri if explicit else f"{PROTOCOL}datasets/{body}")
    except HfUriError as e:
        raise DataError(Problem(uri, "", field, f"{e.msg} (expected hf://datasets/OWNER/NAME[@REVISION]/PATH)",
                                "bad_uri")) from None
    if parsed.type == "bucket":
        raise DataError(Problem(uri, "", field, "a bucket, not a repo: give hf://datasets/OWNER/NAME/PATH", "bad_uri"))
    return HubPath(uri, parsed.id, parsed.type, parsed.revision, parsed.path_in_repo.strip("/"))


def _fail(hp: HubPath, field: str, e: Exception) -> DataError:
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    if isinstance(e, GatedRepoError):
        why = f"{hp.repo_id} is gated: request access on its page, then `hf auth login` or set HF_TOKEN"
    elif isinstance(e, RepositoryNotFoundError):
        why = f"no {hp.repo_type} repo {hp.repo_id} (or it is private: `hf auth login` or set HF_TOKEN)"
    elif isinstance(e, LocalEntryNotFoundError):
        why = ("not in the local Hugging Face cache and the Hub cannot be reached "
               f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}, cache {_cache_dir()})")
    else:
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return DataError(Problem(hp.uri, "", field, why, "missing_file"))


def _cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


@cache
def _commit(repo_id: str, repo_type: str, revision: str | None) -> str:
    """The commit a revision names, from the Hub or (offline) from the cache's refs/."""
    from huggingface_hub import HfApi, constants

    return HfApi().resolve_revision(repo_id, repo_type=repo_type, revision=revision,
                                    local_files_only=constants.is_offline_mode()).resolved


def commit_of(hp: HubPath, field: str) -> str:
    try:
        return _commit(hp.repo_id, hp.repo_type, hp.revision)
    except Exception as e:  # resolution errors of every kind become the one line naming the URI
        from huggingface_hub.errors import RevisionResolutionError

        if isinstance(e, RevisionResolutionError):
            from huggingface_hub.errors import LocalEntryNotFoundError

            e = LocalEntryNotFoundError(str(e))
        raise _fail(hp, field, e) from None


@cache
def local_file(uri: str, field: str = "data.annotations") -> str:
    """The local path of one file of a Hub repo (downloaded into the HF cache when needed)."""
    from huggingface_hub import hf_hub_download

    hp = parse(uri, field)
    if not hp.path:
        raise DataError(Problem(uri, "", field, "names a repo, not a file in it: add its path", "bad_uri"))
    commit = commit_of(hp, field)
    try:
        return hf_hub_download(hp.repo_id, hp.path, repo_type=hp.repo_type, revision=commit)
    except Exception as e:
        raise _fail(hp, field, e) from None


def _snapshot(hp: HubPath, field: str) -> str:
    from huggingface_hub.file_download import repo_folder_name

    return os.path.join(_cache_dir(), repo_folder_name(repo_id=hp.repo_id, repo_type=hp.repo_type), "snapshots",
                        commit_of(hp, field))


def local_folder(uri: str, field: str = "data.root") -> str:
    """Where a Hub folder lives in the HF cache (its commit's snapshot); nothing is fetched yet."""
    hp = parse(uri, field)
    return os.path.join(_snapshot(hp, field), hp.path) if hp.path else _snapshot(hp, field)


def fetch_media(uri: str, samples: list[Sample], field: str = "data.root") -> int:
    """Fetch what `samples` (loaded with `data.root=local_folder(uri)`) read from the Hub folder
    `uri`: the folder of each frame list, each video file. Returns the number of patterns asked
    for; files already cached are not fetched again."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    hp = parse(uri, field)
    snapshot = _snapshot(hp, field)

    def rel(path: str) -> str | None:
        r = os.path.relpath(path, snapshot)
        return None if r.startswith("..") else PurePosixPath(*r.split(os.sep)).as_posix()

    patterns = set()
    for s in samples:
        src = s.frame_source
        wanted = [(src.video, False)] if src.video else [(f, True) for f in src.frames]
        for path, is_frame in wanted:
            r = rel(path)
            if r:
                patterns.add(f"{PurePosixPath(r).parent}/*" if is_frame else r)
    if not patterns:
        return 0
    try:
        snapshot_download(hp.repo_id, repo_type=hp.repo_type, revision=commit_of(hp, field),
                          allow_patterns=sorted(patterns))
    except LocalEntryNotFoundError:
        pass  # offline with part of the media cached: whoever opens a missing file names it
    except Exception as e:
        raise _fail(hp, field, e) from None
    return len(patterns)


def uses_hub(data_cfg: Any) -> bool:
    return any(is_hub(data_cfg[k]) for k in (*FILE_KEYS, "root"))


def localize(data_cfg: Any) -> tuple[dict, str | None]:
    """(data config with local paths, the Hub URI of `root` or None). `data_cfg`: a DictConfig or dict."""
    try:
        from omegaconf import OmegaConf

        plain = OmegaConf.to_container(data_cfg, resolve=True) if OmegaConf.is_config(data_cfg) else dict(data_cfg)
    except ImportError:  # pragma: no cover
        plain = dict(data_cfg)
    for key in FILE_KEYS:
        if is_hub(plain.get(key)):
            plain[key] = local_file(plain[key], f"data.{key}")
    root_uri = plain.get("root") if is_hub(plain.get("root")) else None
    if root_uri:
        plain["root"] = local_folder(root_uri)
    return plain, root_uri
