"""Face alignment: a similarity transform from 5 landmarks onto the embedder's chip template.

Two kinds of chip. SFace and MobileFaceNet were trained on the ArcFace (insightface) chip:
112x112, YuNet's 5 points (eyes, nose tip, mouth corners) sent to ``ARCFACE_TEMPLATE`` by
a least-squares similarity and sampled bilinearly (``warp_face``, what OpenCV's
``FaceRecognizerSF.alignCrop`` and insightface's ``norm_crop`` do). dlib's ResNet needs
dlib's own chip (``align_face``), described next.

The dlib face ResNet was trained on chips cut by dlib's ``get_face_chip(img, shape, 150,
0.25)``: a least-squares similarity transform (rotation, uniform scale, translation) from
5 landmarks to fixed positions in a 150x150 chip. dlib's 5 points are the outer and inner
eye corners and the base of the nose; YuNet gives other points (eye centres, nose tip, mouth
corners), so ``YUNET_CHIP_TEMPLATE`` places YuNet's points where they fall on dlib's chips
on average (fitted by ``fit_template`` on the faces of the dlib oracle; see its docstring).
"""

from __future__ import annotations

import cv2
import numpy as np

CHIP_SIZE = 150
CHIP_PADDING = 0.25

# dlib's 5-point template (shape_predictor_5_face_landmarks order: outer/inner corner of the
# eye on the image's right, outer/inner corner of the eye on the image's left, base of the
# nose) in units of the unpadded face square, from dlib's get_face_chip_details.
DLIB_TEMPLATE_UNIT = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)


def template_in_chip(unit_points: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING):
    """Template points in chip pixels: the face square shrunk by ``padding`` on each side."""
    return size * (padding + np.asarray(unit_points, dtype=np.float64)) / (2 * padding + 1)


DLIB_CHIP_TEMPLATE = template_in_chip(DLIB_TEMPLATE_UNIT)

# YuNet's 5 points (eye on the image's left, eye on the image's right, nose tip, mouth corner
# on the image's left, mouth corner on the image's right) in dlib chip pixels: ``fit_template``
# over the 401 AT&T and Happy House images where both dlib's detector and YuNet (framed as in
# ``detection.FaceDetector``) found the face. The glint set, kept for final figures, was not
# used. On AT&T this 5-point template beats an eyes-only one (eye centres = the mean of
# dlib's two eye corners): TAR at FAR 1e-3 over all pairs 0.974 vs 0.970.
YUNET_CHIP_TEMPLATE = np.array(
    [
        [47.17, 47.68],
        [100.48, 46.75],
        [74.23, 76.96],
        [53.01, 99.48],
        [98.02, 99.23],
    ]
)


# The standard ArcFace 5-point template in 112x112 chip pixels (insightface), in YuNet's order.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)
ARCFACE_CHIP_SIZE = 112


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of the similarity transform that best maps ``source`` onto ``target``.

    Least squares over rotation, uniform scale and translation (no reflection, no shear), the
    transform dlib's ``find_similarity_transform`` fits. In complex numbers the model is
    ``t = a * s + b``; centring both point sets makes ``a`` an ordinary least-squares ratio.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2:
        raise ValueError(f"need two (N, 2) point sets, got {source.shape} and {target.shape}")
    s = source[:, 0] + 1j * source[:, 1]
    t = target[:, 0] + 1j * target[:, 1]
    s_centred, t_centred = s - s.mean(), t - t.mean()
    spread = np.vdot(s_centred, s_centred).real
    if spread == 0:
        raise ValueError("source points coincide: no transform is defined")
    a = np.vdot(s_centred, t_centred) / spread
    b = t.mean() - a * s.mean()
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    template: np.ndarray = YUNET_CHIP_TEMPLATE,
    size: int = CHIP_SIZE,
) -> np.ndarray:
    """Cut the ``size`` x ``size`` chip whose template points land on ``landmarks``.

    As dlib's ``extract_image_chip``: each chip pixel is sampled bilinearly from the image,
    and chip pixels that fall outside the image are black. dlib does not sample through the
    fitted transform itself: it keeps the fit's rotation and the image of the chip centre,
    makes a rectangle ``size * scale - 1`` pixels wide there (a dlib rectangle of width w
    spans w - 1 between its edge pixels) and maps the chip's edge pixels 0 and size - 1 onto
    its edges. So the sampling scale is ``(size * scale - 1) / (size - 1)`` about the chip
    point (size - 1) / 2; reproducing that cuts the chips the network was trained on.
    """
    fitted = similarity_transform(template, landmarks)
    linear, offset = fitted[:, :2], fitted[:, 2]
    scale = np.hypot(*linear[:, 0])
    centre_in_image = linear @ np.full(2, size / 2) + offset
    sampling = linear * ((size * scale - 1) / ((size - 1) * scale))
    chip_to_image = np.column_stack(
        [sampling, centre_in_image - sampling @ np.full(2, (size - 1) / 2)]
    )
    sampled = cv2.warpAffine(
        image.astype(np.float32),
        chip_to_image,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    # dlib casts the interpolated value to uint8 by truncation, not rounding.
    return np.floor(sampled).astype(np.uint8)


# How far (a share of the chip's side) YuNet's landmarks may lie from the template on an image
# that is already an aligned chip. On the ArcFace chips of the 718 LFW dev photos, YuNet's
# landmarks found again on the chip lie at most 5.4 px (median), 10.6 px (99th percentile) from
# the template: 0.1 of 112 px takes 99.4 % of them.
ALIGNED_TOLERANCE = 0.1


def already_aligned(
    image: np.ndarray, landmarks: np.ndarray, template: np.ndarray, size: int
) -> bool:
    """Whether ``image`` is itself a ``size`` x ``size`` chip of the face with these landmarks.

    Face sets are often shipped as aligned chips (glint360k, MS1M: ArcFace 112x112). Aligning
    one again costs accuracy: on a chip the face fills the frame, and YuNet's landmarks there
    come out about 6 % closer together than on the photo it was cut from (median scale of the
    re-fit 1.067 on the LFW dev chips), so the second warp zooms the face in. On the LFW dev
    door with every photo replaced by its chip, aligning again grants 369 of 388 genuine probes
    (0.951), taking the chip as it is 377 (0.972, the figure of the photos themselves), no
    stranger either way.
    """
    if image.shape[:2] != (size, size):
        return False
    offset = np.abs(np.asarray(landmarks, dtype=np.float64) - template).max()
    return bool(offset <= ALIGNED_TOLERANCE * size)


def warp_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    template: np.ndarray = ARCFACE_TEMPLATE,
    size: int = ARCFACE_CHIP_SIZE,
) -> np.ndarray:
    """The ``size`` x ``size`` chip whose ``template`` points land on ``landmarks``.

    Plain bilinear sampling through the fitted transform, pixels outside the image black:
    the ArcFace chip the SFace and MobileFaceNet embedders were trained on.
    """
    to_chip = similarity_transform(landmarks, template)
    return cv2.warpAffine(
        image, to_chip, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )


def fit_template(
    detected_points: np.ndarray, reference_points: np.ndarray, reference_template: np.ndarray
) -> np.ndarray:
    """Where another landmark scheme's points fall on the reference chips, on average.

    For each face, the reference transform maps ``reference_template`` onto the face's
    ``reference_points`` (dlib's 5 points, say); its inverse carries the same face's
    ``detected_points`` (YuNet's) into chip pixels. The mean over faces is a template for the
    detected scheme that cuts chips like the reference's, which the embedder was trained on.
    """
    chip_points = []
    for detected, reference in zip(detected_points, reference_points, strict=True):
        to_chip = cv2.invertAffineTransform(similarity_transform(reference_template, reference))
        chip_points.append(cv2.transform(detected[None].astype(np.float64), to_chip)[0])
    return np.mean(chip_points, axis=0)
