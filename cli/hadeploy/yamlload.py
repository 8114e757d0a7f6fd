"""Read a small YAML configuration file safely: every refusal is a :class:`HadeployError`
(exit 2) naming the file and line and how to fix it, never a traceback, a hang or an
unbounded message.

On top of PyYAML's ``SafeLoader`` (no object construction) this refuses:

- a path that is not a regular file (a FIFO would block ``open``), or a file over
  :data:`MAX_BYTES` (checked before parsing), or text that is not UTF-8;
- more than one YAML document;
- the same key twice in one mapping (PyYAML silently keeps the last one);
- more than :data:`MAX_NODES` values, more than :data:`MAX_ALIASES` aliases, a recursive
  alias, or a document that would expand to more than :data:`MAX_NODES` values (a "billion
  laughs" alias bomb is a few hundred bytes that expands to gigabytes wherever it is
  walked, printed or dumped);
- nesting deeper than :data:`MAX_DEPTH` (PyYAML's composer is recursive);
- integers written with more than :data:`MAX_INT_CHARS` characters (PyYAML evaluates
  ``1:2:3:…`` as base 60, which is quadratic in the length).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from hadeploy.errors import ExitCode, HadeployError

MAX_BYTES = 1024 * 1024
MAX_ALIASES = 100
MAX_NODES = 10_000
MAX_DEPTH = 50
MAX_INT_CHARS = 64
MAX_QUOTE = 60
_TOO_MANY = "a hadeploy.yaml holds a few hundred values: check that this is the right file"


def clip(value: object, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` cut to about ``limit`` characters: what error messages quote."""
    if isinstance(value, str) and len(value) > 4 * limit:
        value = value[:4 * limit]  # never repr a megabyte to keep 60 characters of it
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _line(node_or_mark: Any) -> int | None:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    line = getattr(mark, "line", None)
    return None if line is None else line + 1


class _Refused(yaml.YAMLError):
    """A refusal of :class:`SafeLoader`, with the line it is about and the fix."""

    def __init__(self, message: str, hint: str, line: int | None) -> None:
        super().__init__(message)
        self.message, self.hint, self.line = message, hint, line


class SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the limits above; use it through :func:`load_text`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._nodes = 0

    def _peek(self) -> Any:
        return self.peek_event()  # type: ignore[no-untyped-call]

    def _next(self) -> Any:
        return self.get_event()  # type: ignore[no-untyped-call]

    # -- composition: aliases and depth ---------------------------------------------------
    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(f"more than {MAX_ALIASES} YAML aliases (*name)",
                               "write the values out; a configuration file needs few or no "
                               "aliases", _line(self._peek()))
        else:
            self._nodes += 1
            if self._nodes > MAX_NODES:  # early: composing a huge document takes seconds
                raise _Refused(f"more than {MAX_NODES} values", _TOO_MANY, _line(self._peek()))
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nesting deeper than {MAX_DEPTH} levels",
                               "flatten the document; hadeploy.yaml nests 4 levels at most",
                               _line(self._peek()))
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def get_single_node(self) -> Node | None:
        self._next()  # StreamStart
        document = None
        if not self.check_event(yaml.StreamEndEvent):
            document = self.compose_document()
        if not self.check_event(yaml.StreamEndEvent):
            raise _Refused("more than one YAML document ('---') in the file",
                           "keep one document: remove the second '---' and what follows it",
                           _line(self._peek()))
        self._next()  # StreamEnd
        if document is not None:
            _check_expansion(document)
        return document

    # -- construction: duplicate keys, huge integers ----------------------------------------
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, int | None] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<: *base' may override keys: that is its purpose
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                    duplicate = key in seen
                except TypeError:
                    continue  # unhashable: construct_mapping reports it below
                if duplicate:
                    where = f" (first on line {first})" if first else ""
                    raise _Refused(f"duplicate key {clip(key)}{where}",
                                   "keep one of the two: YAML would silently use the last",
                                   _line(key_node))
                seen[key] = _line(key_node)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError) as exc:  # a bad date, !!binary, …
            raise _Refused(f"invalid value ({_cut(str(exc))})",
                           "fix the value, or quote it if it is meant as text",
                           _line(node)) from None

    def construct_yaml_int(self, node: ScalarNode) -> int:
        if len(str(node.value)) > MAX_INT_CHARS:
            raise _Refused(f"a number of more than {MAX_INT_CHARS} characters",
                           "use a smaller number, or quote it if it is meant as text",
                           _line(node))
        return super().construct_yaml_int(node)  # type: ignore[no-any-return]


SafeLoader.add_constructor("tag:yaml.org,2002:int", SafeLoader.construct_yaml_int)


def _check_expansion(root: Node) -> None:
    """Refuse a recursive alias, or more than MAX_NODES nodes once aliases are expanded.

    Shared nodes (aliases) are counted once per reference; memoized, so linear in the
    number of distinct nodes."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            total = 1 + sum(sizes[id(c)] for c in _children(node))
            if total > MAX_NODES:  # (only aliases get here: compose_node counts the rest)
                raise _Refused(f"the document expands to more than {MAX_NODES} values "
                               "(aliases repeat what they refer to)",
                               "write the values out instead of nesting aliases",
                               _line(node))
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in active:
            raise _Refused("a recursive alias (a value that contains itself)",
                           "remove the alias that refers to its own anchor", _line(node))
        active.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in active:
                raise _Refused("a recursive alias (a value that contains itself)",
                               "remove the alias that refers to its own anchor",
                               _line(child))
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _src(path: Path | str) -> str:
    """The path as error messages show it: as is when short and printable."""
    text = str(path)
    return text if len(text) <= 200 and text.isprintable() else clip(text, 200)


def _fail(source: str, message: str, hint: str, line: int | None = None) -> NoReturn:
    where = f"{source}: line {line}: " if line else f"{source}: "
    raise HadeployError(where + message, hint=hint, code=ExitCode.BAD_INPUT)


def load_text(text: str, source: str) -> Any:
    """Parse ``text`` (the content of ``source``) with :class:`SafeLoader`."""
    if len(text) > MAX_BYTES:
        _fail(source, f"is larger than {MAX_BYTES // 1024} KiB",
              "a hadeploy.yaml is a few kilobytes: check that this is the right file")
    loader: SafeLoader | None = None
    try:
        loader = SafeLoader(text)  # checks every character first (ReaderError)
        return loader.get_single_data()
    except _Refused as exc:
        _fail(source, exc.message, exc.hint, exc.line)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = str(exc.problem or exc.context or "invalid YAML")
        column = f", column {mark.column + 1}" if mark else ""
        where = f"line {mark.line + 1}{column}" if mark else "somewhere"
        raise HadeployError(f"{source}: invalid YAML at {where}: {_cut(problem)}",
                            hint="fix the YAML syntax (indentation, ':' after keys, quotes)",
                            code=ExitCode.BAD_INPUT) from None
    except yaml.YAMLError as exc:  # ReaderError: a character YAML does not allow
        position = getattr(exc, "position", None)
        character = getattr(exc, "character", None)
        line = None
        if isinstance(position, int):
            line = text.count("\n", 0, position) + 1
            what = f"character {clip(chr(character) if isinstance(character, int) else character)}"
        else:
            what = _cut(str(exc))
        _fail(source, f"is not a YAML text file ({what})",
              "hadeploy.yaml must be UTF-8 text without control characters", line)
    except (ValueError, OverflowError, TypeError, RecursionError) as exc:
        # Not expected (construct_object turns these into _Refused); never a traceback.
        _fail(source, f"invalid YAML ({_cut(str(exc))})", "fix the YAML value")
    finally:
        if loader is not None:
            loader.dispose()


def _cut(text: str, limit: int = 200) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 1] + "…"


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _check_path(path: Path, max_bytes: int) -> None:
    """Refuse a missing path, a directory, a FIFO, socket or device, a file too large."""
    hint_missing = "create one with 'hadeploy init', or pass --config PATH"
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        _fail(_src(path), "config file does not exist", hint_missing)
    except NotADirectoryError:
        _fail(_src(path), "config file does not exist (a part of the path is a file)",
              hint_missing)
    except PermissionError:
        _fail(_src(path), "cannot read the config file: permission denied",
              "check the permissions of the file and of its directories")
    except (OSError, ValueError) as exc:  # ELOOP, ENAMETOOLONG, a NUL in the path, …
        _fail(_src(path), f"cannot read the config file ({_cut(str(exc), 120)})",
              "pass the path of a readable YAML file, e.g. --config hadeploy.yaml")
    if stat.S_ISDIR(st.st_mode):
        _fail(_src(path), "config path is a directory, not a file",
              "pass the YAML file itself, e.g. --config hadeploy.yaml")
    if not stat.S_ISREG(st.st_mode):
        _fail(_src(path), f"config path is {_kind(st.st_mode)}, not a regular file",
              "pass the path of a YAML file, e.g. --config hadeploy.yaml")
    if st.st_size > max_bytes:
        _fail(_src(path), f"is larger than {max_bytes // 1024} KiB ({st.st_size} bytes)",
              "a hadeploy.yaml is a few kilobytes: check that this is the right file")


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes of the regular file ``path``; O_NONBLOCK, so that a
    FIFO put in its place since :func:`_check_path` cannot block the open."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(
        os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except PermissionError:
        _fail(_src(path), "cannot read the config file: permission denied",
              "check the permissions of the file and of its directories")
    except OSError as exc:
        _fail(_src(path), f"cannot open the config file ({_cut(str(exc), 120)})",
              "pass the path of a readable YAML file")
    chunks: list[bytes] = []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            _fail(_src(path), "config path is not a regular file",
                  "pass the path of a YAML file, e.g. --config hadeploy.yaml")
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        _fail(_src(path), f"cannot read the config file ({_cut(str(exc), 120)})",
              "check that the file is readable")
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_text(path: Path, *, max_bytes: int = MAX_BYTES) -> str:
    """The UTF-8 text of the regular file ``path`` (never blocks on a FIFO or a device)."""
    _check_path(path, max_bytes)
    data = _read_bytes(path, max_bytes)
    if len(data) > max_bytes:
        _fail(_src(path), f"is larger than {max_bytes // 1024} KiB",
              "a hadeploy.yaml is a few kilobytes: check that this is the right file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        _fail(_src(path), f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
              f"{exc.start})", "save the file as UTF-8 text", line)


def load_file(path: Path) -> Any:
    """Read and parse the YAML file ``path`` with every check above."""
    return load_text(read_text(path), _src(path))
