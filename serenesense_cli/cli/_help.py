"""``--help`` that reads like a command-line tool's, not like Python.

Typer labels values with Python types (``<bool>`` beside a flag,
``<list[Path]>``, ``<str>``); this module relabels every command's
parameters once, when the root group is built: flags get no value label,
values get ``PATH``, ``DIR``, ``INTEGER``, ``NUMBER`` or ``TEXT``, choices
stay ``a|b|c``, and arguments are named in capitals (``MODEL``,
``PATHS``). A parameter declared with its own ``metavar`` keeps it.
"""

from __future__ import annotations

from typing import Any

_PLAIN_TYPES = {int: "INTEGER", float: "NUMBER", str: "TEXT"}
MAX_CHOICE_LABEL = 18
"""Longer choice lists are spelled out in the help text (an 80-column screen)."""


def tidy_group(group: Any) -> None:
    """Relabel the parameters of ``group``'s commands and of its sub-groups'."""
    for command in group.commands.values():
        if hasattr(command, "commands"):  # a sub-group such as `data`
            tidy_group(command)
        tidy_command(command)


def tidy_command(command: Any) -> None:
    """Give each parameter without its own ``metavar`` a plain one."""
    for param in command.params:
        if param.metavar is None:
            label = _label(param)
            if label is not None:
                param.metavar = label
        if _is_argument(param):
            # The argument's name (MODEL, PATHS) says what it is; no type column.
            param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
            param._usage_display_name = _usage_shape(param)  # type: ignore[attr-defined]
    if getattr(command, "_plain_help_option", False):
        return  # tidied before: the help option is wrapped once
    make_help_option = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = make_help_option(ctx)
        if option is not None:
            option.metavar = ""  # a flag: no value label
        return option

    command.get_help_option = help_option  # type: ignore[method-assign]
    command._plain_help_option = True


def _usage_shape(param: Any) -> Any:
    """The usage line's piece: ``MODEL``, ``[MODEL]``, ``MODELS...`` or ``[PATHS]...``;
    a declared shape such as ``MODEL [PATH]...`` as it is."""
    name = str(param.metavar)
    if " " in name or "[" in name or name.endswith("..."):
        shape = name
    else:
        shape = name if param.required else f"[{name}]"
        shape += "..." if param.nargs != 1 else ""
    return lambda: shape


def _is_argument(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "argument"


def _label(param: Any) -> str | None:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:
        return None
    if _is_argument(param):
        return (param.name or "value").upper()  # the usage line adds "..." to a list
    if getattr(param, "is_flag", False) or descriptor.annotation is bool:
        return ""
    if descriptor.is_choice:
        choices = [str(getattr(c, "value", c)) for c in descriptor.choices or ()]
        label = "|".join(choices)
        if len(label) <= MAX_CHOICE_LABEL:
            return label
        # A long list would wrap inside the value column: name the choices in the
        # help text instead (unless it names them already).
        text = param.help or ""
        if not all(choice in text for choice in choices):
            param.help = f"{text.rstrip()} One of: {', '.join(choices)}.".lstrip()
        return "NAME"
    if descriptor.is_path:
        return _path_label(param)
    return _PLAIN_TYPES.get(_element_type(descriptor.annotation), "VALUE")


def _path_label(param: Any) -> str:
    info = getattr(param.type_descriptor, "parameter_info", None)
    file_okay = getattr(info, "file_okay", True)
    dir_okay = getattr(info, "dir_okay", True)
    if not file_okay:
        return "DIR"
    if not dir_okay:
        return "FILE"
    return "PATH"


def _element_type(annotation: Any) -> Any:
    args = getattr(annotation, "__args__", None)
    if getattr(annotation, "__origin__", None) is list and args:
        return args[0]
    return annotation
