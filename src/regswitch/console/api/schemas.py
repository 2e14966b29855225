"""Request bodies of the admin API (pydantic: validated at the edge, documented in OpenAPI)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Override = Literal["inherit", "on", "off"]


class AccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=128)
    domain: str = Field(min_length=1, max_length=253)
    password: str | None = Field(default=None, min_length=1, max_length=128)
    allowed_networks: list[str] = Field(default_factory=list)
    max_contacts: int = Field(default=1, ge=1, le=100)
    register_replace: Override = "inherit"
    replace_keep_calls: Override = "inherit"
    enabled: bool = True
    # serve the account's domain too if it is not (else 422 naming the fix)
    create_domain: bool = False


class AccountPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str | None = Field(default=None, min_length=1, max_length=128)
    allowed_networks: list[str] | None = None
    max_contacts: int | None = Field(default=None, ge=1, le=100)
    register_replace: Override | None = None
    replace_keep_calls: Override | None = None
    enabled: bool | None = None


class AccountImport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accounts: list[AccountCreate] = Field(max_length=100_000)
    replace_existing: bool = False
    create_domain: bool = False  # serve every domain the accounts name


class DomainCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str = Field(min_length=1, max_length=253)


class ParameterValue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Any


CLEARABLE = frozenset({"allowed_networks", "password"})


def patch_dict(model: BaseModel) -> dict[str, Any]:
    """Only the fields the client sent; an explicit null only where it means
    'clear' (no networks; no password: an IP-only account)."""
    data = model.model_dump(exclude_unset=True)
    return {k: v for k, v in data.items() if v is not None or k in CLEARABLE}
