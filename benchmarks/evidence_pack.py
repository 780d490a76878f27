"""What travels between slices of the evidence plan: at most 8 files of at most 16 MiB come back from a GPU call,
and what the next slice needs must go there with the data and the repository (64 MiB in all). So a slice packs its
state into tar files that each fit, and the next one unpacks them into an empty working folder."""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path

from resnetlab.train.checkpoint import list_checkpoints

MiB = 2**20
FILE_LIMIT, FILES, TOTAL_LIMIT = 16 * MiB, 8, 64 * MiB  # what may come back from one slice
PART = 15 * MiB  # a tar file's contents at most (the tar headers need a little room)
STATE_BUDGET = 38 * MiB  # the packed state: 64 MiB travel in all, with the 18 MiB data and the ~7 MiB repository
Member = tuple[Path, int]  # a path relative to the working folder, and its size in bytes


def state_members(work: Path, finished: Callable[[str], bool], needed: set[str]) -> list[Member]:
    """The files of ``work`` the next slice needs: each run's records and its newest checkpoint (only the weights
    of a finished run, and none once no later part reads them: ``needed``), the plan's records; not links, locks,
    TensorBoard logs or published weights (they travel apart), but the weights index, which accumulates."""
    members = []
    for path in sorted(work.rglob("*")):
        parts = path.relative_to(work).parts
        if (path.is_symlink() or path.is_dir() or path.name == ".lock" or "tensorboard" in parts
                or (parts[0] == "weights" and path.name != "index.json")):
            continue
        if parts[0] == "runs" and len(parts) > 4 and parts[2] == "checkpoints":
            name = parts[1]
            newest = list_checkpoints(work / "runs" / name)
            if not newest or parts[3] != newest[0].name:
                continue
            if finished(name) and (name not in needed or path.name != "model.safetensors"):
                continue  # a finished run is never resumed: its weights are all a later part reads
        members.append((path.relative_to(work), path.stat().st_size))
    return members


def sized(work: Path, paths: Iterable[Path]) -> list[Member]:
    return [(path, (work / path).stat().st_size) for path in paths]


def bins(members: list[Member]) -> list[list[Member]]:
    """Members grouped into tar files of at most PART bytes each, first fit by decreasing size."""
    groups: list[tuple[int, list[Member]]] = []
    for member in sorted(members, key=lambda m: -m[1]):
        if member[1] > PART:
            raise RuntimeError(f"{member[0]} ({member[1] / MiB:.1f} MiB) does not fit one file")
        for index, (size, group) in enumerate(groups):
            if size + member[1] <= PART:
                group.append(member)
                groups[index] = (size + member[1], group)
                break
        else:
            groups.append((member[1], [member]))
    return [group for _, group in groups]


def write_tar(path: Path, root: Path, members: list[Path]) -> Path:
    temporary = path.with_suffix(".tmp")
    with tarfile.open(temporary, "w") as archive:
        for member in members:
            archive.add(root / member, arcname=str(member), recursive=False)
    temporary.replace(path)
    return path


def write_packs(out: Path, work: Path, state: list[Member], weights: list[Member], results: list[Path]) -> list[Path]:
    """state-NN.tar, weights-NN.tar and results.tar in ``out``, refused before anything is written when they
    would be more than FILES files, and after when one is over FILE_LIMIT or all over TOTAL_LIMIT."""
    state_groups, weight_groups = bins(state), bins(weights)
    if len(state_groups) + len(weight_groups) + 1 > FILES:
        raise RuntimeError(f"the state needs {len(state_groups)} files and the weights {len(weight_groups)}: "
                           f"more than {FILES}")
    written = []
    for prefix, groups in (("state", state_groups), ("weights", weight_groups)):
        for index, group in enumerate(groups, 1):
            written.append(write_tar(out / f"{prefix}-{index:02d}.tar", work, [m for m, _ in group]))
    written.append(write_tar(out / "results.tar", work, results))
    total = sum(path.stat().st_size for path in written)
    too_big = [p.name for p in written if p.stat().st_size > FILE_LIMIT]
    if too_big or total > TOTAL_LIMIT:
        raise RuntimeError(f"packed files too large ({too_big}, {total / MiB:.1f} MiB in all)")
    return written


def unpack(state: Path, work: Path) -> int:
    """The previous slice's state-*.tar and weights-*.tar into ``work``; returns how many files were read."""
    archives = sorted(state.glob("state-*.tar")) + sorted(state.glob("weights-*.tar"))
    for archive in archives:
        with tarfile.open(archive) as handle:
            handle.extractall(work, filter="data")  # refuses links, absolute paths and '..'
    return len(archives)
