"""Procedural face identities: parameters drawn from a seed and painted into a head texture.

No face photographs can be downloaded here, so identities are generated. Each :class:`FaceIdentity` holds the
parameters a person would use to tell faces apart (skin tone, face shape, eyes, brows, nose, mouth, hair,
beard, glasses, ...) and paints them into an *equirectangular* head texture: column ``u`` is the azimuth
around the head (``u = 0.5`` is the front, +x of the head frame; ``u`` grows towards the head's left, i.e. the
image right as seen from the front) and row ``v`` is the elevation (``v = 0`` the top). The texture is mapped
onto the ellipsoidal head mesh of :mod:`envs.worlds.people`, so the face is recognisable from the front,
foreshortened from the side and invisible from behind, which is exactly what active perception exploits.

The same seed always gives the same identities and textures (NumPy ``Generator`` only, no global RNG).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from common.io import atomic_write_bytes
from envs.errors import InvalidArgumentError

#: Texture size (width, height); 512 px over 360 degrees is ~1.4 px per degree, finer than a 0.5 m render.
TEXTURE_SIZE: tuple[int, int] = (512, 256)

_SKIN_TONES = np.array(  # light to dark, RGB 0..1
    [[0.96, 0.80, 0.69], [0.92, 0.74, 0.60], [0.85, 0.64, 0.50], [0.76, 0.55, 0.40],
     [0.62, 0.43, 0.30], [0.48, 0.32, 0.22], [0.36, 0.24, 0.17], [0.27, 0.18, 0.13]]
)
_HAIR_COLOURS = np.array(
    [[0.08, 0.06, 0.05], [0.25, 0.16, 0.09], [0.45, 0.30, 0.16], [0.70, 0.52, 0.30], [0.90, 0.78, 0.50],
     [0.60, 0.22, 0.10], [0.65, 0.65, 0.65], [0.92, 0.92, 0.90]]
)
_IRIS_COLOURS = np.array([[0.30, 0.18, 0.08], [0.15, 0.35, 0.65], [0.25, 0.50, 0.30], [0.45, 0.45, 0.50]])
_FRAME_COLOURS = np.array([[0.05, 0.05, 0.05], [0.55, 0.35, 0.15], [0.75, 0.10, 0.10], [0.10, 0.25, 0.70],
                           [0.80, 0.75, 0.60]])
_SHIRT_COLOURS = np.array([[0.8, 0.1, 0.1], [0.1, 0.3, 0.8], [0.1, 0.6, 0.2], [0.9, 0.8, 0.2], [0.3, 0.3, 0.3],
                           [0.9, 0.9, 0.9], [0.5, 0.2, 0.6], [0.9, 0.5, 0.1]])

HAIR_STYLES = ("bald", "short", "medium", "long", "fringe")
BEARD_STYLES = ("none", "stubble", "moustache", "goatee", "full")
GLASSES_STYLES = ("none", "round", "square", "sun")


@dataclass(frozen=True)
class FaceIdentity:
    """Parameters of one procedural person. Angles are degrees on the head (azimuth, elevation)."""

    index: int
    name: str
    skin: tuple[float, float, float]
    head_radii: tuple[float, float, float]  # depth (x), half-width (y), half-height (z) in metres
    height: float  # standing height in metres
    eye_spacing: float
    eye_size: float
    eye_height: float
    iris: tuple[float, float, float]
    brow_thickness: float
    brow_slant: float
    nose_length: float
    nose_width: float
    mouth_width: float
    lip_colour: tuple[float, float, float]
    lip_thickness: float
    hair_style: str
    hair_colour: tuple[float, float, float]
    hairline: float
    beard: str
    glasses: str
    glasses_colour: tuple[float, float, float]
    cheek_blush: float
    mole: tuple[float, float] | None
    shirt: tuple[float, float, float]

    def to_dict(self) -> dict:
        """JSON-serialisable parameters (for dataset manifests and the environment's identity table)."""
        return asdict(self)

    # -- painting ----------------------------------------------------------------------------------
    def texture(self, size: tuple[int, int] = TEXTURE_SIZE) -> np.ndarray:
        """The equirectangular head texture as ``uint8 (H, W, 3)`` RGB."""
        return paint_head_texture(self, size)


def _pick(rng: np.random.Generator, table: np.ndarray, jitter: float = 0.04) -> tuple[float, float, float]:
    colour = table[rng.integers(len(table))] + rng.normal(0.0, jitter, 3)
    return tuple(float(c) for c in np.clip(colour, 0.0, 1.0))  # type: ignore[return-value]


def sample_identity(rng: np.random.Generator, index: int) -> FaceIdentity:
    """Draw one identity's parameters from ``rng``."""
    skin = _pick(rng, _SKIN_TONES, 0.03)
    hair_style = HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=[0.1, 0.3, 0.25, 0.2, 0.15])]
    beard = BEARD_STYLES[rng.choice(len(BEARD_STYLES), p=[0.45, 0.15, 0.15, 0.1, 0.15])]
    glasses = GLASSES_STYLES[rng.choice(len(GLASSES_STYLES), p=[0.55, 0.2, 0.17, 0.08])]
    lips = np.clip(np.array(skin) * np.array([0.85, 0.55, 0.55]) + rng.normal(0, 0.03, 3), 0, 1)
    return FaceIdentity(
        index=index,
        name=f"id_{index:03d}",
        skin=skin,
        head_radii=(float(rng.uniform(0.095, 0.11)), float(rng.uniform(0.070, 0.088)),
                    float(rng.uniform(0.110, 0.130))),
        height=float(rng.uniform(1.55, 1.92)),
        eye_spacing=float(rng.uniform(14.0, 22.0)),
        eye_size=float(rng.uniform(3.5, 6.0)),
        eye_height=float(rng.uniform(2.0, 10.0)),
        iris=_pick(rng, _IRIS_COLOURS, 0.03),
        brow_thickness=float(rng.uniform(1.0, 4.0)),
        brow_slant=float(rng.uniform(-4.0, 4.0)),
        nose_length=float(rng.uniform(10.0, 20.0)),
        nose_width=float(rng.uniform(4.0, 9.0)),
        mouth_width=float(rng.uniform(10.0, 20.0)),
        lip_colour=tuple(float(c) for c in lips),  # type: ignore[arg-type]
        lip_thickness=float(rng.uniform(1.5, 4.5)),
        hair_style=str(hair_style),
        hair_colour=_pick(rng, _HAIR_COLOURS, 0.04),
        hairline=float(rng.uniform(25.0, 40.0)),
        beard=str(beard),
        glasses=str(glasses),
        glasses_colour=_pick(rng, _FRAME_COLOURS, 0.03),
        cheek_blush=float(rng.uniform(0.0, 0.25)),
        mole=(float(rng.uniform(-30, 30)), float(rng.uniform(-35, 5))) if rng.random() < 0.3 else None,
        shirt=_pick(rng, _SHIRT_COLOURS, 0.08),
    )


#: The identity split of identity seed 0 (what the shipped face models use): identities 0-49 are the recogniser's
#: gallery (the drone task's people are 0-9), 50-549 are held out from training (open-set calibration and
#: evaluation; the frame datasets' held-out 50-59 are among them), and training identities start at 550.
GALLERY_IDENTITIES: range = range(0, 50)
HELDOUT_IDENTITIES: range = range(50, 550)
TRAIN_IDENTITIES_START = 550


def identity_split(n_train: int) -> dict[str, range]:
    """The disjoint ``gallery``, ``heldout`` and ``train`` identity indices, with ``n_train`` training identities.

    The first two are fixed (:data:`GALLERY_IDENTITIES`, :data:`HELDOUT_IDENTITIES`); the training identities are
    the ``n_train`` after them, so growing the training set never moves an identity between splits.

    Raises:
        InvalidArgumentError: ``n_train`` is not a positive integer.
    """
    if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 1:
        raise InvalidArgumentError(f"number of training identities must be an integer >= 1, got {n_train!r}")
    return {"gallery": GALLERY_IDENTITIES, "heldout": HELDOUT_IDENTITIES,
            "train": range(TRAIN_IDENTITIES_START, TRAIN_IDENTITIES_START + n_train)}


def identities_at(indices: list[int] | range, seed: int = 0) -> list[FaceIdentity]:
    """The identities at ``indices`` of :func:`generate_identities` ``(max(indices) + 1, seed)``, without painting
    or keeping the others (thousands of identities are cheap to draw, their textures are not)."""
    indices = list(indices)
    if not indices or min(indices) < 0:
        raise InvalidArgumentError(f"identity indices must be a non-empty list of integers >= 0, got {indices[:5]}")
    streams = np.random.SeedSequence(seed).spawn(max(indices) + 1)
    return [sample_identity(np.random.default_rng(streams[i]), i) for i in indices]


def generate_identities(n: int, seed: int = 0) -> list[FaceIdentity]:
    """``n`` distinct identities from ``seed``; the first ``k`` are the same for any ``n >= k``.

    Raises:
        InvalidArgumentError: ``n`` is not positive.
    """
    if n < 1:
        raise InvalidArgumentError(f"number of identities must be >= 1, got {n}")
    # One child stream per identity so growing n never changes earlier identities.
    streams = np.random.SeedSequence(seed).spawn(n)
    return [sample_identity(np.random.default_rng(s), i) for i, s in enumerate(streams)]


# -- texture painting --------------------------------------------------------------------------------
class _Canvas:
    """Draws in head angles (azimuth, elevation in degrees) onto the equirectangular texture."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.w, self.h = size
        self.img = np.zeros((self.h, self.w, 3), np.float32)
        self.ppd = self.w / 360.0  # pixels per degree, same both ways for a 2:1 texture

    def px(self, az: float, el: float) -> tuple[int, int]:
        return round((az + 180.0) * self.ppd), round((90.0 - el) * self.ppd)

    def ellipse(self, az: float, el: float, half_w: float, half_h: float, colour, angle: float = 0.0,
                thickness: int = -1) -> None:
        axes = (max(1, round(half_w * self.ppd)), max(1, round(half_h * self.ppd)))
        cv2.ellipse(self.img, self.px(az, el), axes, angle, 0, 360, tuple(map(float, colour)), thickness,
                    cv2.LINE_AA)

    def poly(self, points: list[tuple[float, float]], colour, closed: bool = True, thickness: int = -1) -> None:
        pts = np.array([self.px(a, e) for a, e in points], np.int32)
        if thickness < 0:
            cv2.fillPoly(self.img, [pts], tuple(map(float, colour)), cv2.LINE_AA)
        else:
            cv2.polylines(self.img, [pts], closed, tuple(map(float, colour)), thickness, cv2.LINE_AA)

    def band(self, el_top: float, el_bottom: float, colour, az_min: float = -180.0, az_max: float = 180.0) -> None:
        x0, y0 = self.px(az_min, el_top)
        x1, y1 = self.px(az_max, el_bottom)
        self.img[max(0, y0):y1, max(0, x0):x1] = colour


def paint_head_texture(face: FaceIdentity, size: tuple[int, int] = TEXTURE_SIZE) -> np.ndarray:
    """Paint ``face`` into an equirectangular RGB texture (see the module docstring for the mapping)."""
    c = _Canvas(size)
    skin = np.array(face.skin, np.float32)
    hair = np.array(face.hair_colour, np.float32)
    c.img[:] = skin
    # Shading cue for the jaw/face outline, so face shape reads at low resolution.
    c.ellipse(0, -12, 62, 52, skin * 0.93, thickness=max(1, round(2 * c.ppd)))
    # Ears at the sides.
    for side in (-1, 1):
        c.ellipse(side * 88, 2, 6, 11, skin * 0.85)
    # Hair: everything above the hairline, plus the back of the head by style.
    if face.hair_style != "bald":
        c.band(90, face.hairline, hair)
        # Real hair covers the back of the head down to the nape, so a head seen from behind reads as hair,
        # not as a faceless face (which both a detector and a navigating agent would confuse with a front).
        back_low = {"short": -40, "medium": -50, "long": -75, "fringe": -40}[face.hair_style]
        c.band(90, back_low, hair, -180, -95)
        c.band(90, back_low, hair, 95, 180)
        if face.hair_style in ("medium", "long"):  # hair falls around the face
            for side in (-1, 1):
                c.poly([(side * 70, face.hairline), (side * 95, face.hairline), (side * 95, back_low),
                        (side * 75, back_low + 10)], hair)
        if face.hair_style == "fringe":
            c.poly([(-60, face.hairline), (60, face.hairline), (45, 20), (0, 16), (-45, 20)], hair)
    else:
        c.band(90, 60, skin * 0.9)
    # Cheeks.
    if face.cheek_blush > 0.02:
        blush = skin * (1 - face.cheek_blush) + np.array([0.9, 0.3, 0.3]) * face.cheek_blush
        for side in (-1, 1):
            c.ellipse(side * 28, -12, 9, 6, blush)
    # Eyes: white, iris, pupil.
    ey = face.eye_height
    for side in (-1, 1):
        ex = side * face.eye_spacing
        c.ellipse(ex, ey, face.eye_size * 1.5, face.eye_size * 0.8, (0.95, 0.95, 0.95))
        c.ellipse(ex, ey, face.eye_size * 0.7, face.eye_size * 0.7, face.iris)
        c.ellipse(ex, ey, face.eye_size * 0.3, face.eye_size * 0.3, (0.02, 0.02, 0.02))
        # Brows, slanted per identity.
        by = ey + face.eye_size + 4.0
        c.poly([(ex - side * 7, by - face.brow_slant * 0.5), (ex + side * 7, by + face.brow_slant * 0.5)],
               hair * 0.8, closed=False, thickness=max(1, round(face.brow_thickness * c.ppd)))
    # Nose: a darker wedge with nostrils.
    top = ey - 2
    bottom = top - face.nose_length
    c.poly([(0, top), (-face.nose_width / 2, bottom), (face.nose_width / 2, bottom)], skin * 0.78)
    for side in (-1, 1):
        c.ellipse(side * face.nose_width * 0.3, bottom + 0.5, 1.2, 0.8, skin * 0.45)
    # Mouth.
    my = bottom - 8
    c.ellipse(0, my, face.mouth_width / 2, face.lip_thickness, face.lip_colour)
    c.poly([(-face.mouth_width / 2, my), (face.mouth_width / 2, my)], np.array(face.lip_colour) * 0.5,
           closed=False, thickness=1)
    # Beard and moustache.
    beard = hair * 0.9
    if face.beard == "stubble":
        c.img[:] = np.where(_beard_mask(c, my), c.img * 0.75 + beard * 0.25, c.img)
    elif face.beard == "full":
        mask = _beard_mask(c, my)
        c.img[:] = np.where(mask, beard, c.img)
        c.ellipse(0, my, face.mouth_width / 2, face.lip_thickness, face.lip_colour)
    elif face.beard == "goatee":
        c.ellipse(0, my - 9, 8, 7, beard)
    if face.beard in ("moustache", "full", "goatee"):
        c.ellipse(0, my + face.lip_thickness + 2, face.mouth_width / 2 + 2, 2.5, beard)
    if face.mole is not None:
        c.ellipse(face.mole[0], face.mole[1], 1.2, 1.2, skin * 0.4)
    # Glasses over the eyes.
    if face.glasses != "none":
        frame = face.glasses_colour
        r = face.eye_size * 1.9
        for side in (-1, 1):
            ex = side * face.eye_spacing
            if face.glasses == "sun":
                c.ellipse(ex, ey, r, r * 0.8, (0.05, 0.05, 0.07))
            elif face.glasses == "round":
                c.ellipse(ex, ey, r, r, frame, thickness=max(1, round(1.2 * c.ppd)))
            else:
                c.poly([(ex - r, ey + r * 0.8), (ex + r, ey + r * 0.8), (ex + r, ey - r * 0.8),
                        (ex - r, ey - r * 0.8)], frame, thickness=max(1, round(1.2 * c.ppd)))
        c.poly([(-face.eye_spacing + r, ey), (face.eye_spacing - r, ey)], frame, closed=False,
               thickness=max(1, round(c.ppd)))
        for side in (-1, 1):  # temples run back to the ears
            c.poly([(side * (face.eye_spacing + r), ey), (side * 85, ey + 2)], frame, closed=False,
                   thickness=max(1, round(c.ppd)))
    return (np.clip(c.img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _beard_mask(c: _Canvas, mouth_el: float) -> np.ndarray:
    """Jaw region below the cheeks (as an ``(H, W, 1)`` bool mask)."""
    mask = np.zeros((c.h, c.w), np.uint8)
    pts = [(-60, mouth_el + 12), (-50, -50), (-20, -68), (20, -68), (50, -50), (60, mouth_el + 12),
           (25, mouth_el + 6), (0, mouth_el + 7), (-25, mouth_el + 6)]
    cv2.fillPoly(mask, [np.array([c.px(a, e) for a, e in pts], np.int32)], 1)
    return mask[..., None].astype(bool)


def write_textures(identities: list[FaceIdentity], folder: str | Path) -> dict[str, Path]:
    """Write each identity's texture as ``<name>.png`` into ``folder``; returns name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for face in identities:
        path = folder / f"{face.name}.png"
        if not path.is_file():  # written whole or not at all: a half-written texture would be reused
            ok, png = cv2.imencode(".png", cv2.cvtColor(face.texture(), cv2.COLOR_RGB2BGR))
            if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
                raise InvalidArgumentError(f"could not encode the texture of {face.name} as PNG")
            atomic_write_bytes(path, png.tobytes())
        paths[face.name] = path
    return paths


def face_points(radii: tuple[float, float, float], n_az: int = 9, n_el: int = 9) -> np.ndarray:
    """Points of the face region (brows to chin, cheek to cheek) on the head ellipsoid, head frame, ``(N, 3)``.

    Labels are the image bounding box of the camera-facing subset of these points.
    """
    az = np.deg2rad(np.linspace(-50.0, 50.0, n_az))
    el = np.deg2rad(np.linspace(-58.0, 30.0, n_el))
    A, E = np.meshgrid(az, el)
    rx, ry, rz = radii
    pts = np.stack([rx * np.cos(E) * np.cos(A), ry * np.cos(E) * np.sin(A), rz * np.sin(E)], -1)
    return pts.reshape(-1, 3)


def ellipsoid_normals(points: np.ndarray, radii: tuple[float, float, float]) -> np.ndarray:
    """Outward unit normals of the head ellipsoid at ``points`` (head frame)."""
    n = points / np.square(np.asarray(radii))
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def face_centre(radii: tuple[float, float, float]) -> np.ndarray:
    """The point between the eyes and the mouth on the face surface (head frame)."""
    el = math.radians(-10.0)
    return np.array([radii[0] * math.cos(el), 0.0, radii[2] * math.sin(el)])
