"""Custom Evaluation: the user's evaluation programs, their mounts and what one run reserves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from rayeval.spec.base import NAME_PATTERN, SpecModel, strings_allowed, strings_as

__all__ = ["CustomConfigSpec", "CustomResources", "MountSpec"]


class MountSpec(SpecModel):
    """A file or folder the evaluation program needs."""

    path: str = Field(
        description="A local file or folder, shipped to the node that runs the program (into its working "
        "directory, under its own name); with `shared`, a path every node already sees."
    )
    shared: bool = Field(False, description="The path is on a filesystem all nodes share: used where it is.")
    target: str | None = Field(
        None,
        description="Where a shipped mount is placed, relative to the program's working directory (e.g. "
        "data/questions.jsonl); default its own name there.",
    )

    @model_validator(mode="after")
    def _exists(self) -> MountSpec:
        if not self.shared and not Path(self.path).exists():
            raise ValueError(f"mount '{self.path}' does not exist here (a path all nodes share needs `shared: true`)")
        if self.target is not None:
            parts = Path(self.target).parts
            if self.shared:
                raise ValueError(
                    f"mount '{self.path}': `target` places a shipped mount; a shared one is used where it is"
                )
            if not parts or Path(self.target).is_absolute() or ".." in parts:
                raise ValueError(
                    f"mount target '{self.target}' must be a path inside the program's working directory "
                    "(relative, without '..')"
                )
        return self

    @property
    def placed(self) -> str:
        """Where the program finds it: its target (or own name) in its working directory, or its shared path."""
        if self.shared:
            return self.path
        return Path(self.target).as_posix() if self.target else Path(self.path).name


class CustomResources(SpecModel):
    """What one run of the program reserves on the cluster."""

    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved for the program.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved for the program.")
    memory_mb: int | None = Field(None, ge=1, description="Memory reserved for the program (MiB); none by default.")


class CustomConfigSpec(SpecModel):
    """Custom Evaluation: one evaluation program, run once on each model."""

    name: str = Field(pattern=NAME_PATTERN, description="Name of the configuration, unique in the task.")
    evaluation_sets: list[str] = Field(
        min_length=1, description="Names of the evaluation sets the program covers (for progress and display)."
    )
    image: str | None = Field(
        None, description="Container image the program runs in (Ray's `image_uri`; the image needs Ray)."
    )
    image_version: str | None = Field(None, description="The image's tag (appended as `image:version`).")
    mounts: list[MountSpec] = Field(
        default_factory=list,
        description="Files and folders the program needs (a bare path for a file or folder shipped as it is).",
        json_schema_extra=strings_allowed,
    )
    command: str = Field(
        min_length=1,
        description="Start command, run by the shell in the program's working directory (where shipped mounts are).",
    )
    parameters: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Appended to the command as `--name value`."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables for the program.")
    resources: CustomResources = Field(default_factory=CustomResources, description="What one run reserves.")
    timeout_s: float | None = Field(None, gt=0, description="Seconds before a run is killed (none: no limit).")
    direct: bool = Field(
        False,
        description="The program calls the model itself: EVAL_INFERENCE_URL is the model's own URL and "
        "EVAL_AUTHORIZATION_HEADER_VALUE its credential, and the task's parameters, MAX_CONCURRENCY and "
        "MAX_RETRY_PER_QUERY are not applied. By default the program calls rayeval's gateway for the task, which "
        "applies them, counts usage and keeps the credential.",
    )

    @field_validator("mounts", mode="before")
    @classmethod
    def _mount_shorthand(cls, value: Any) -> Any:
        return strings_as(value, "path")

    @field_validator("mounts")
    @classmethod
    def _one_mount_a_place(cls, value: list[MountSpec]) -> list[MountSpec]:
        places = [m.placed for m in value if not m.shared]
        if twice := sorted({p for p in places if places.count(p) > 1}):
            raise ValueError(f"two mounts would be placed at {', '.join(twice)}: give one of them a `target`")
        return value

    @field_validator("env")
    @classmethod
    def _no_platform_variables(cls, value: dict[str, str]) -> dict[str, str]:
        taken = sorted(k for k in value if k.startswith("EVAL_"))
        if taken:
            raise ValueError(f"EVAL_* variables are set by rayeval; rename {', '.join(taken)}")
        return value

    @model_validator(mode="after")
    def _image(self) -> CustomConfigSpec:
        if self.image_version and not self.image:
            raise ValueError("`image_version` needs `image`")
        names = [Path(m.path).name for m in self.mounts]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"mounts share a name ({', '.join(dupes)}): each is reached by its name")
        return self

    @property
    def image_uri(self) -> str | None:
        """`image:version`, or the image as given."""
        if not self.image:
            return None
        return f"{self.image}:{self.image_version}" if self.image_version else self.image
