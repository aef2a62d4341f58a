"""Profile: away until, office days, laptop and internet at home, the facts rebalancing works from.

One call, ``Replica.set_profile`` (what ``hbw-sync profile`` makes), with only the answers that
changed: every change is bytes on someone's 3G link, so saving an unchanged form sends nothing.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ....errors import UsageError
from ....i18n import _
from ... import views
from ..layout import call, esc, flash, field, form, page, select, text_of, unlocked

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def day_words() -> dict[str, str]:
    return {"mon": _("Monday"), "tue": _("Tuesday"), "wed": _("Wednesday"), "thu": _("Thursday"),
            "fri": _("Friday"), "sat": _("Saturday"), "sun": _("Sunday")}


def yes_no(v: bool | None) -> str:
    return {True: "yes", False: "no", None: "unsaid"}[v]


def _answer(text: str | None) -> bool | None:
    if text in (None, "unsaid"):
        return None
    if text not in ("yes", "no"):
        raise UsageError(_("Answer yes or no."))
    return text == "yes"


def profile_form(request: web.Request, p: dict[str, Any]) -> str:
    answers = [("yes", _("yes")), ("no", _("no")), ("unsaid", _("not said"))]
    dw = day_words()
    boxes = "".join(
        f'<label class="day"><input type="checkbox" name="office_days" value="{d}"'
        f'{" checked" if d in p["office_days"] else ""}> {esc(dw[d])}</label> ' for d in DAYS)
    return form(request, "/profile", (
        field(_("Away (ill, on leave) until"), "away_until", p["away_until"] or "", kind="date")
        + f'<fieldset><legend>{esc(_("Days you are in the office"))}</legend>{boxes}</fieldset>'
        + select(_("Laptop at home"), "laptop", answers, yes_no(p["laptop"]))
        + select(_("Internet at home"), "internet", answers, yes_no(p["internet"]))
        + f'<p><button>{esc(_("Save"))}</button></p>'))


@unlocked
async def show(request: web.Request, pp: str) -> web.StreamResponse:
    p = await call(request, pp, lambda rep: rep.profile())
    intro = _("Your team plans with these answers: work that needs a laptop is not given to someone without one, "
              "and work due while you are away goes to a colleague.")
    return page(request, _("Profile of {member}").format(member=p["member"]),
                f"<p>{esc(intro)}</p>" + profile_form(request, p))


@unlocked
async def save(request: web.Request, pp: str) -> web.StreamResponse:
    f = await request.post()
    away = text_of(f, "away_until", max_len=40)
    days = [d for d in f.getall("office_days", []) if isinstance(d, str)]
    if any(d not in DAYS for d in days) or len(days) > 7:
        raise UsageError(_("Pick office days from the list."))
    laptop = _answer(text_of(f, "laptop", max_len=10))
    internet = _answer(text_of(f, "internet", max_len=10))

    def apply(rep: Any) -> None:
        now = rep.profile()
        values: dict[str, Any] = {}
        if (away or None) != now["away_until"]:
            values["away_until"] = views.parse_date(away) if away else None
        if sorted(days, key=DAYS.index) != list(now["office_days"]):
            values["office_days"] = views.parse_days(",".join(days) or "none")
        if laptop != now["laptop"] and laptop is not None:
            values["laptop"] = laptop
        if internet != now["internet"] and internet is not None:
            values["internet"] = internet
        if values:
            rep.set_profile(**values)

    await call(request, pp, apply)
    flash(request, _("Saved. It reaches your team at your next sync."))
    raise web.HTTPSeeOther("/profile")


def register(app: web.Application) -> None:
    app.router.add_get("/profile", show)
    app.router.add_post("/profile", save)
