"""Shared dependencies: the switch behind the API."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from regswitch.app.operations import Operations
from regswitch.app.switch import Switch


def get_switch(request: Request) -> Switch:
    switch: Switch = request.app.state.switch
    return switch


SwitchDep = Annotated[Switch, Depends(get_switch)]


def get_operations(request: Request) -> Operations:
    """What the console may do to the running switch (app/operations.py)."""
    switch: Switch = request.app.state.switch
    return switch.operations


OperationsDep = Annotated[Operations, Depends(get_operations)]
