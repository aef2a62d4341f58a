"""The tray icon, drawn with Pillow for each state: no image files to ship, any size the desktop asks.

Why drawn and not colour alone: a person with colour blindness, or a monochrome panel, must still
tell the states apart, so each has its own shape too: a tick (all sent), a number (waiting),
arrows (syncing), an exclamation mark (needs attention), a crossed link (offline), two bars (paused).
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from .tray_state import TrayState

COLOURS = {
    TrayState.ALL_SENT: (46, 125, 50),  # green
    TrayState.WAITING: (21, 101, 192),  # blue
    TrayState.SYNCING: (21, 101, 192),
    TrayState.ATTENTION: (198, 40, 40),  # red
    TrayState.OFFLINE: (97, 97, 97),  # grey
    TrayState.PAUSED: (97, 97, 97),
}
WHITE = (255, 255, 255, 255)


def _font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def draw(state: TrayState, waiting: int = 0, size: int = 64) -> Image.Image:
    """An RGBA image of ``size`` pixels square for ``state`` (``waiting`` is the number shown when WAITING)."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    s = size / 64  # every coordinate below is on a 64-pixel grid
    d.ellipse((2 * s, 2 * s, 62 * s, 62 * s), fill=COLOURS[state] + (255,))
    w = max(2, round(6 * s))
    if state is TrayState.ALL_SENT:
        d.line([(17 * s, 33 * s), (28 * s, 44 * s), (47 * s, 21 * s)], fill=WHITE, width=w, joint="curve")
    elif state is TrayState.WAITING:
        text = str(waiting) if waiting < 100 else "99+"
        font = _font(round((30 if len(text) < 3 else 22) * s))
        d.text((32 * s, 33 * s), text, fill=WHITE, font=font, anchor="mm")
    elif state is TrayState.SYNCING:
        d.line([(20 * s, 24 * s), (44 * s, 24 * s)], fill=WHITE, width=w)
        d.polygon([(44 * s, 15 * s), (54 * s, 24 * s), (44 * s, 33 * s)], fill=WHITE)
        d.line([(20 * s, 40 * s), (44 * s, 40 * s)], fill=WHITE, width=w)
        d.polygon([(20 * s, 31 * s), (10 * s, 40 * s), (20 * s, 49 * s)], fill=WHITE)
    elif state is TrayState.ATTENTION:
        d.rounded_rectangle((28 * s, 12 * s, 36 * s, 40 * s), radius=3 * s, fill=WHITE)
        d.ellipse((27 * s, 44 * s, 37 * s, 54 * s), fill=WHITE)
    elif state is TrayState.OFFLINE:
        d.arc((14 * s, 18 * s, 50 * s, 54 * s), start=200, end=340, fill=WHITE, width=w)
        d.ellipse((28 * s, 38 * s, 36 * s, 46 * s), fill=WHITE)
        d.line([(14 * s, 14 * s), (50 * s, 50 * s)], fill=WHITE, width=w)
    elif state is TrayState.PAUSED:
        d.rectangle((22 * s, 18 * s, 29 * s, 46 * s), fill=WHITE)
        d.rectangle((35 * s, 18 * s, 42 * s, 46 * s), fill=WHITE)
    return img
