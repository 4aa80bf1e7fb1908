"""Webots world files (``.wbt``): a small VRML-like reader, enough to validate a world and learn its names.

Used by :mod:`envs.sim.webots` to fail before Webots starts (missing file, broken brace, undeclared PROTO,
no extern supervisor) and to find the DEF paths of joints and sites (:meth:`WbtWorld.def_paths`), and by the
world-syntax tests.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from envs.errors import WorldFileError

#: Webots R2023b base node types; every other node type must be declared with EXTERNPROTO.
WEBOTS_BASE_NODES = frozenset({
    "Accelerometer", "Altimeter", "Appearance", "Background", "BallJoint", "BallJointParameters",
    "Billboard", "Box", "Brake", "CadShape", "Camera", "Capsule", "Charger", "Color", "Compass", "Cone",
    "Connector", "ContactProperties", "Coordinate", "Cubemap", "Cylinder", "Damping",
    "DirectionalLight", "Display", "DistanceSensor", "ElevationGrid", "Emitter", "Fluid", "Focus",
    "Fog", "GPS", "Group", "Gyro", "HingeJoint", "HingeJointParameters", "Hinge2Joint", "ImageTexture",
    "ImmersionProperties", "IndexedFaceSet", "IndexedLineSet", "InertialUnit", "JointParameters", "LED",
    "Lens", "LensFlare", "Lidar", "LightSensor", "LinearMotor", "Material", "Mesh", "Microphone",
    "Muscle", "Normal", "PBRAppearance", "Pen", "Physics", "Plane", "PointLight", "PointSet", "Pose",
    "PositionSensor", "Propeller", "Radar", "Radio", "RangeFinder", "Receiver", "Recognition", "Robot",
    "RotationalMotor", "Shape", "Skin", "SliderJoint", "Slot", "Solid", "SolidReference", "Speaker",
    "Sphere", "SpotLight", "TextureCoordinate", "TextureTransform", "TouchSensor", "Track",
    "TrackWheel", "Transform", "VacuumGripper", "Viewpoint", "WorldInfo", "Zoom"
})

_HEADER = re.compile(r"#VRML_SIM (R(\d{4})([ab]))(?:-rev\d+)? utf8\s*$")
_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[{}\[\],"]|[^\s{}\[\]"#,]+')
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan")
_PROTO_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

Scalar = str | float | bool


@dataclass
class WbtNode:
    """One node of a world file: its type, optional DEF name and fields.

    Field values are a tuple of scalars (``translation 0 0 1`` -> ``(0.0, 0.0, 1.0)``), a node or ``None``
    (``SFNode``), or a list of scalars and nodes (``MF`` fields).
    """

    type_name: str
    def_name: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def value(self, name: str, default: Any = None) -> Any:
        """The field's single scalar (``name "x"`` -> ``"x"``), its tuple if longer, or ``default``."""
        value = self.fields.get(name, default)
        if isinstance(value, tuple) and len(value) == 1:
            return value[0]
        return value

    def children(self) -> Iterator[WbtNode]:
        """Nodes held directly in this node's fields."""
        for value in self.fields.values():
            items = value if isinstance(value, list) else [value]
            yield from (item for item in items if isinstance(item, WbtNode))


@dataclass
class WbtWorld:
    """A parsed world file: header version, EXTERNPROTO URLs and top-level nodes."""

    version: str
    externprotos: list[str]
    nodes: list[WbtNode]
    source: str = "<string>"

    def iter_nodes(self) -> Iterator[WbtNode]:
        """Every node, depth first (a node reused with ``USE`` is visited at each use)."""
        stack = list(reversed(self.nodes))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(list(node.children())))

    @property
    def proto_names(self) -> dict[str, str]:
        """Declared PROTO name -> its EXTERNPROTO URL."""
        return {Path(urllib.parse.urlparse(url).path).stem: url for url in self.externprotos}

    @property
    def basic_time_step_ms(self) -> float:
        """``WorldInfo.basicTimeStep`` in milliseconds (Webots' default is 32)."""
        for node in self.nodes:
            if node.type_name == "WorldInfo":
                return float(node.value("basicTimeStep", 32.0))
        return 32.0

    def def_paths(
        self, root: WbtNode | None = None, skip_fields: tuple[str, ...] = ()
    ) -> list[tuple[str, WbtNode]]:
        """Every ``DEF`` node below ``root`` (the whole world by default), depth first, with its DEF path.

        The path is what ``Supervisor.getFromDef`` finds the node by: Webots looks the first dot-separated name
        up anywhere in the world, then each following one among the direct sub-nodes of the node before it, so
        the path is the node's DEF preceded by those of its unbroken line of DEF'd ancestors
        (``shoulder.link1.elbow``). A node reused with ``USE`` is listed once, where it is defined.

        Args:
            root: the node whose descendants are listed (not itself); ``None`` lists the world's nodes too.
            skip_fields: field names whose nodes (and their descendants) are left out, e.g.
                ``("boundingObject",)``.
        """
        found: list[tuple[str, WbtNode]] = []
        seen: set[int] = set()
        prefix = root.def_name if root is not None and root.def_name else ""
        start = self._sub_nodes(root, skip_fields) if root is not None else list(self.nodes)
        stack = [(node, prefix) for node in reversed(start)]
        while stack:
            node, prefix = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            path = ""  # an ancestor without a DEF breaks the chain Webots can follow
            if node.def_name:
                path = f"{prefix}.{node.def_name}" if prefix else node.def_name
                found.append((path, node))
            stack.extend((child, path) for child in reversed(self._sub_nodes(node, skip_fields)))
        return found

    @staticmethod
    def _sub_nodes(node: WbtNode, skip_fields: tuple[str, ...]) -> list[WbtNode]:
        nodes = []
        for name, value in node.fields.items():
            if name not in skip_fields:
                nodes += [item for item in (value if isinstance(value, list) else [value]) if isinstance(item, WbtNode)]
        return nodes

    def extern_supervisors(self) -> dict[str, WbtNode]:
        """Robots an extern Supervisor can control: ``controller "<extern>"`` and ``supervisor TRUE``."""
        return {
            str(node.value("name", "robot")): node
            for node in self.iter_nodes()
            if node.value("controller") == "<extern>" and node.value("supervisor") is True
        }


class _WbtParser:
    """Recursive-descent reader for the node syntax of ``.wbt`` files (no PROTO bodies, no templates)."""

    def __init__(self, text: str, source: str) -> None:
        self.text, self.source = text, source
        self.tokens: list[tuple[str, int]] = []
        for match in _TOKEN.finditer(text):
            token = match.group()
            if token.startswith("#") or token == ",":  # comments; VRML counts commas as white space
                continue
            if token == '"':
                self.fail(match.start(), "unterminated string")
            self.tokens.append((token, match.start()))
        self.pos = 0
        self.defs: dict[str, WbtNode] = {}
        self.unclosed: list[tuple[str, int]] = []  # open nodes and lists, to say which one never closes

    def fail(self, offset: int, message: str) -> NoReturn:
        line = self.text.count("\n", 0, offset) + 1
        raise WorldFileError(f"{self.source}:{line}: {message}")

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        if self.pos >= len(self.tokens):
            if self.unclosed:
                what, offset = self.unclosed[-1]
                self.fail(offset, f"unexpected end of file: {what} opened here is never closed")
            self.fail(len(self.text), f"unexpected end of file (expected {expected or 'more'})")
        token, offset = self.tokens[self.pos]
        if expected is not None and token != expected:
            self.fail(offset, f"expected {expected!r}, got {token!r}")
        self.pos += 1
        return token

    def offset(self) -> int:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else len(self.text)

    def starts_node(self) -> bool:
        token = self.peek()
        if token in ("DEF", "USE", "NULL"):
            return True
        following = self.tokens[self.pos + 1][0] if self.pos + 1 < len(self.tokens) else None
        return token is not None and token[:1].isupper() and following == "{"

    def world(self) -> tuple[list[str], list[WbtNode]]:
        externprotos: list[str] = []
        nodes: list[WbtNode] = []
        while self.peek() is not None:
            if self.peek() in ("EXTERNPROTO", "IMPORTABLE"):
                if self.take() == "IMPORTABLE":
                    self.take("EXTERNPROTO")
                offset, url = self.offset(), self.take()
                if not url.startswith('"'):
                    self.fail(offset, f"EXTERNPROTO needs a quoted URL, got {url}")
                externprotos.append(url[1:-1])
            elif self.starts_node():
                node = self.node()
                if node is not None:
                    nodes.append(node)
            else:
                self.fail(self.offset(), f"expected a node or EXTERNPROTO, got {self.peek()!r}")
        return externprotos, nodes

    def node(self) -> WbtNode | None:
        offset, word = self.offset(), self.take()
        if word == "NULL":
            return None
        if word == "USE":
            name_offset, name = self.offset(), self.take()
            if name not in self.defs:
                self.fail(name_offset, f"USE {name} before its DEF")
            return self.defs[name]
        def_name = None
        if word == "DEF":
            def_name = self.take()
            offset, word = self.offset(), self.take()
        if not word[:1].isupper():
            self.fail(offset, f"expected a node type, got {word!r}")
        self.take("{")
        self.unclosed.append((word, offset))
        node = WbtNode(word, def_name)
        while self.peek() != "}":
            if self.peek() is None:
                self.take("}")  # reports the missing brace
            name_offset, name = self.offset(), self.take()
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
                self.fail(name_offset, f"expected a field name in {word}, got {name!r}")
            node.fields[name] = self.field_value(name)
        self.take("}")
        self.unclosed.pop()
        if def_name is not None:
            self.defs[def_name] = node
        return node

    def field_value(self, name: str) -> Any:
        if self.peek() == "[":
            self.unclosed.append((f"the list of field {name!r}", self.offset()))
            self.take("[")
            items: list[Any] = []
            while self.peek() != "]":
                if self.peek() in (None, "}"):
                    self.take("]")  # reports the missing bracket
                items.append(self.node() if self.starts_node() else self.scalar(name))
            self.take("]")
            self.unclosed.pop()
            return items
        if self.starts_node():
            return self.node()
        values: list[Scalar] = []
        while self.peek() is not None and (self.peek().startswith('"') or self.is_scalar(self.peek())):
            values.append(self.scalar(name))
        if not values:
            self.fail(self.offset(), f"field {name!r} has no value")
        return tuple(values)

    @staticmethod
    def is_scalar(token: str) -> bool:
        return token in ("TRUE", "FALSE") or _NUMBER.fullmatch(token) is not None

    def scalar(self, name: str) -> Scalar:
        offset, token = self.offset(), self.take()
        if token.startswith('"'):
            return re.sub(r"\\(.)", r"\1", token[1:-1])
        if token in ("TRUE", "FALSE"):
            return token == "TRUE"
        if _NUMBER.fullmatch(token):
            return float(token)
        self.fail(offset, f"bad value {token!r} in field {name!r}")


def parse_world(text: str, source: str = "<string>") -> WbtWorld:
    """Parse and check the text of a Webots world file.

    Checks: the ``#VRML_SIM R20xxy utf8`` header (R2023b or newer), balanced braces and brackets, field
    syntax, ``USE`` after ``DEF``, well-formed EXTERNPROTO URLs, and that every non-base node type is
    declared with EXTERNPROTO (Webots R2022b+ refuses undeclared PROTOs).

    Raises:
        WorldFileError: with the file and line of the first problem.
    """
    first_line = text.split("\n", 1)[0].rstrip("\r")
    header = _HEADER.match(first_line)
    if header is None:
        raise WorldFileError(
            f"{source}:1: expected a '#VRML_SIM R2023b utf8' header, got {first_line[:60]!r}"
        )
    if (int(header.group(2)), header.group(3)) < (2023, "b"):
        raise WorldFileError(f"{source}:1: world is {header.group(1)}; Vantage needs R2023b or newer")
    parser = _WbtParser(text, source)
    externprotos, nodes = parser.world()
    world = WbtWorld(header.group(1), externprotos, nodes, source)
    for url in externprotos:
        problem = externproto_problem(url)
        if problem:
            raise WorldFileError(f"{source}: EXTERNPROTO {url!r}: {problem}")
    declared = world.proto_names
    for node in world.iter_nodes():
        if node.type_name not in WEBOTS_BASE_NODES and node.type_name not in declared:
            raise WorldFileError(
                f"{source}: node type {node.type_name!r} is neither a Webots base node nor declared with "
                f"EXTERNPROTO; declared: {sorted(declared) or '(none)'}"
            )
    top_defs = [node.def_name for node in nodes if node.def_name]
    duplicates = sorted({name for name in top_defs if top_defs.count(name) > 1})
    if duplicates:
        raise WorldFileError(f"{source}: top-level DEF names must be unique, repeated: {duplicates}")
    return world


def externproto_problem(url: str) -> str | None:
    """Why ``url`` is not a usable EXTERNPROTO reference, or ``None`` if it is."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("http", "https"):
        if not parsed.netloc:
            return "URL has no host"
    elif parsed.scheme == "webots":
        pass
    elif parsed.scheme:
        return f"scheme {parsed.scheme!r} is not one of http, https, webots (or a relative path)"
    path = Path(parsed.path)
    if path.suffix != ".proto":
        return "must name a .proto file"
    if not _PROTO_NAME.fullmatch(path.stem):
        return f"{path.stem!r} is not a PROTO name"
    if any(ch.isspace() for ch in url):
        return "URL contains whitespace"
    return None


def load_world(path: str | Path) -> WbtWorld:
    """Read and check a ``.wbt`` world file (see :func:`parse_world`).

    Raises:
        WorldFileError: the file is missing, unreadable, not ``.wbt`` or malformed.
    """
    path = Path(path)
    if path.suffix != ".wbt":
        raise WorldFileError(f"Webots worlds are .wbt files, got {path}")
    if not path.is_file():
        raise WorldFileError(f"Webots world file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorldFileError(f"could not read Webots world {path}: {exc}") from exc
    return parse_world(text, str(path))


# --------------------------------------------------------------------------------------------------
# Rotations: Webots stores axis-angle (x, y, z, angle); Vantage uses quaternions (w, x, y, z).
# --------------------------------------------------------------------------------------------------


