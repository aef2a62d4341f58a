"""A realistic, reproducible week of team activity, as hbw-sync ops.

Used by the bandwidth benchmark (``scripts/bench_wire.py``), the dictionary
trainer (``scripts/train_dict.py``) and reusable by other benchmarks and the demo::

    from workload import generate, device_key
    changes = generate(seed=2024)          # [(device_name, Op), ...] in time order

What it models: a five-person public-administration team (invoices, permits,
inspection reports, budget lines, audit queries, complaints from districts)
working from home for one week (Monday 07:00 UTC to Sunday), each person on one
device. Every change is one op made with ``hbw_sync.ops.make_op``:

* the first ``n_tasks`` changes create the tasks already on the board on Monday
  morning; after that, new tasks keep arriving so that creations are ~15% of all
  changes (for the defaults: 50 + ~100 = ~150 creations out of 1,000);
* the rest, by weight: ~35% routing edits (status, assignment, due date,
  priority, occasionally two at once), ~25% description edits, ~15% notes,
  ~10% title edits.

A creation carries title, a 2-5 sentence description, priority, due, needs and
assignee. Descriptions are built from templates filled from word lists and a
per-task context (its supplier, district, invoice or permit number, budget
line...), so a task's sentences are coherent with each other while different
tasks read differently. A description edit sends the whole new text (the field
is last-writer-wins), and, as people do, it usually *revises* the previous text
(appends a sentence, replaces or drops one) rather than rewriting it.

HLCs are per device and strictly increasing (``hbw_sync.hlc.Clock``), driven by
simulated wall times weighted to working hours and weekdays. ``base`` is the op
id of the last op the workload generated on that entity (None for a creation),
so bases are realistic 16-byte revisions, mostly by other devices. Entity ids
are 8 pseudo-random bytes, as a client would mint them. Device keys are
deterministic: ``DeviceKey(sha256(name))``.

Everything is derived from ``random.Random(seed)``: the same seed gives the same
ops, byte for byte, on any machine.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

_ROOT = Path(__file__).resolve().parent.parent  # run from a source checkout: use its hbw_sync
if (_ROOT / "hbw_sync").is_dir() and str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from hbw_sync import hlc
from hbw_sync.crypto import DeviceKey
from hbw_sync.ops import Kind, Op, Priority, Status, date_to_day, make_op, make_op_id

DEFAULT_MEMBERS = ("amina", "bosco", "chidi", "dana", "eli")
WEEK_START = _dt.datetime(2024, 3, 4, 7, 0, tzinfo=_dt.timezone.utc)  # a Monday, 10:00 in Nairobi

# -- keys -------------------------------------------------------------------------------


def device_key(name: str) -> DeviceKey:
    """The deterministic device key of a member's (only) device."""
    return DeviceKey(private=hashlib.sha256(name.encode()).digest())


_ID_CACHE: dict[str, bytes] = {}


def device_id(name: str) -> bytes:
    if name not in _ID_CACHE:
        _ID_CACHE[name] = device_key(name).device_id
    return _ID_CACHE[name]


# -- vocabulary ---------------------------------------------------------------------------

DISTRICTS = (
    "Northgate", "Riverside", "Old Town", "Hillcrest", "Eastfield", "Market Ward", "Lakeside",
    "Kilima", "Mwembe", "Station Ward", "Upper Valley", "Southbank", "Greenhill", "Harbour",
    "Millbrook", "Kibanda", "Westlands", "Majengo",
)
SUPPLIERS = (
    "Tana Road Works Ltd", "Coastline Printing", "Umoja Office Supplies", "BrightPath Electrical",
    "Mlima Construction", "City Water Services", "Savanna IT Solutions", "Jua Solar Installers",
    "Pamoja Cleaning Co.", "Kijani Landscaping", "Baraka Motors", "Nuru Stationers",
    "Faraja Security Services", "Delta Surveyors", "Amani Catering",
)
SERVICES = (
    "road patching on Station Road", "printing of ballot-style rate notices", "toner and paper for the registry",
    "rewiring of the health centre", "repairs to the market roof", "borehole maintenance",
    "laptop repairs for the finance office", "solar lights at the bus park", "cleaning of the district offices",
    "grass cutting at the stadium", "vehicle servicing for the inspection team", "stationery for the land registry",
    "night guards at the depot", "a boundary survey of the cemetery plot", "catering for the budget hearing",
    "drainage clearing after the rains", "replacement of the water meters on Church Lane",
)
FACILITIES = (
    "the main market", "the slaughterhouse", "Kilima primary school", "the maternity wing",
    "the bus park", "the new library", "the fire station", "the water treatment works",
    "the youth centre", "the open-air market", "the sub-county dispensary", "the public toilets at the stage",
)
FINDINGS = (
    "cracked floor slabs in two classrooms", "no working fire extinguishers", "blocked drains behind the stalls",
    "expired food handler certificates", "exposed wiring in the store room", "a leaking roof over the records room",
    "no ramp for wheelchair users", "overflowing waste skips", "an unlicensed extension at the back",
    "broken hand-washing stations", "the generator log not kept since January",
)
MISSING = (
    "the structural engineer's signature", "a copy of the title deed", "the approved site plan",
    "proof of payment of the plan approval fee", "the environmental impact assessment",
    "the neighbours' consent form", "a valid KRA PIN certificate", "the fire safety plan",
)
PROBLEMS = (
    "burst water pipes", "uncollected garbage", "street lights out for two weeks", "flooding after the rains",
    "a collapsed culvert", "noise from an unlicensed bar", "potholes on the access road",
    "illegal dumping", "hawkers blocking the footpath",
)
PLACES = (
    "the chief's camp", "the bus stage", "the primary school gate", "the old post office", "the health centre",
    "the junction with Mission Road", "the railway crossing", "the cattle dip", "the mosque",
)
OFFICES = (
    "finance office", "procurement unit", "county treasury", "planning department", "legal office",
    "internal audit", "public health office", "works department", "registry", "chief officer's office",
)
COMMITTEES = (
    "budget committee", "tender evaluation committee", "planning committee", "ward development committee",
    "audit committee", "health and sanitation committee",
)
DOCS = (
    "delivery note", "purchase order", "payment voucher", "inspection checklist", "site plan",
    "bill of quantities", "completion certificate", "LPO", "receipt", "minutes", "covering letter",
    "tax compliance certificate", "bank details form",
)
BUDGET_LINES = (
    ("2210-0101", "electricity"), ("2210-0301", "printing and stationery"), ("2211-0102", "office supplies"),
    ("2220-0205", "maintenance of buildings"), ("2220-0101", "maintenance of vehicles"),
    ("3111-0504", "road rehabilitation"), ("2210-0504", "catering and hospitality"),
    ("2211-0201", "cleaning services"), ("3111-0111", "ICT equipment"), ("2210-1101", "security services"),
)
LICENSES = ("trading licence", "liquor licence", "food hygiene certificate", "fire clearance", "signage permit")
TOPICS = (
    "late payments to suppliers", "the revenue shortfall in the markets", "fuel use by pool vehicles",
    "pending bills from last year", "double allocation of market stalls", "overtime claims at the depot",
    "the stalled footbridge project", "rates arrears in the industrial area",
)
PROJECTS = (
    "the Mwembe footbridge", "the Kilima borehole", "the Riverside drainage works", "the market shade extension",
    "the Greenhill access road", "the health centre solar system", "the stadium perimeter wall",
    "the new ward office", "the Harbour Road street lights",
)
REASONS = (
    "the supplier has not delivered the corrected invoice", "the engineer is on leave until next week",
    "the committee meeting was postponed", "the system was down at the treasury", "the site was flooded",
    "we are waiting for the chief officer's signature", "the applicant asked for more time",
    "the budget line is fully committed until the supplementary budget passes",
)
STATES = (
    "still pending", "approved", "signed and scanned", "on the chief officer's desk", "with the treasury",
    "returned for correction", "filed in the registry", "ready for collection",
)
FULL_NAMES = {
    "amina": "Amina Wanjiru", "bosco": "Bosco Otieno", "chidi": "Chidi Okafor", "dana": "Dana Mwangi",
    "eli": "Eli Kiprono",
}
CONTACTS = ("Mr. Kamau", "Ms. Achieng", "Mrs. Njoroge", "Mr. Hassan", "Ms. Wambui", "Dr. Mutua", "Mr. Ochieng")
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")

# -- per-task context ---------------------------------------------------------------------

TASK_TYPES = ("invoice", "permit", "inspection", "budget", "audit", "tender", "complaint", "licence", "memo", "site")


def _amount(rng: random.Random) -> str:
    return f"KES {rng.choice((12, 18, 24, 36, 48, 75, 96, 120, 148, 210, 315, 480, 650, 1200)) * 1000 + rng.randrange(0, 1000, 50):,}"


def _new_context(rng: random.Random, members: Sequence[str]) -> dict:
    bl, bl_name = rng.choice(BUDGET_LINES)
    return {
        "type": rng.choice(TASK_TYPES),
        "district": rng.choice(DISTRICTS),
        "supplier": rng.choice(SUPPLIERS),
        "service": rng.choice(SERVICES),
        "facility": rng.choice(FACILITIES),
        "inv": f"INV-2024-{rng.randrange(100, 2000):04d}",
        "bp": f"BP/{rng.randrange(1000, 9999)}/24",
        "pv": f"PV {rng.randrange(10000, 99999)}",
        "aq": f"AQ-{rng.randrange(10, 99)}/2023",
        "cref": f"C-{rng.randrange(100, 999)}",
        "tender": f"T/{rng.randrange(10, 60):03d}/2024",
        "bl": bl,
        "bl_name": bl_name,
        "amount": _amount(rng),
        "license": rng.choice(LICENSES),
        "topic": rng.choice(TOPICS),
        "project": rng.choice(PROJECTS),
        "committee": rng.choice(COMMITTEES),
        "office": rng.choice(OFFICES),
        "problem": rng.choice(PROBLEMS),
        "place": rng.choice(PLACES),
        "q": rng.randrange(1, 5),
        "member": rng.choice(members),
    }


_TITLES = {
    "invoice": ("Review invoice {inv} from {supplier}", "Pay {supplier} invoice {inv}", "Verify {supplier} invoice for {service}"),
    "permit": ("Approve building permit {bp} ({district})", "Check permit application {bp}", "Building plans {bp}, {district}"),
    "inspection": ("Inspection report: {facility}, {district}", "Follow-up inspection of {facility}", "Write up inspection of {facility}"),
    "budget": ("Reconcile budget line {bl} for Q{q}", "Budget line {bl} ({bl_name}): commitments", "Q{q} variance report, line {bl}"),
    "audit": ("Respond to audit query {aq}", "Audit query {aq} on {topic}", "Documents for audit query {aq}"),
    "tender": ("Prepare tender {tender} for {project}", "Evaluate bids for tender {tender}", "Tender {tender}: {project}"),
    "complaint": ("Complaint {cref}: {problem} in {district}", "Follow up complaint {cref} from {district}", "Reply to {district} residents on complaint {cref}"),
    "licence": ("Renew {license} for {supplier}", "{license} renewal, {district}", "Check {supplier} {license}"),
    "memo": ("Draft memo on {topic}", "Brief for the {committee} on {topic}", "Memo to the {office}: {topic}"),
    "site": ("Site visit: {project}, {district}", "Progress report on {project}", "Snag list for {project}"),
}

_OPENERS = {
    "invoice": (
        "{supplier} submitted invoice {inv} for {amount} covering {service}.",
        "Invoice {inv} from {supplier} ({amount}) is for {service} in {district}.",
    ),
    "permit": (
        "Building permit application {bp} for a plot in {district} came in through the registry.",
        "The applicant for permit {bp} in {district} has resubmitted the building plans.",
    ),
    "inspection": (
        "The inspection of {facility} in {district} found {finding}.",
        "During the routine inspection of {facility} we found {finding}.",
    ),
    "budget": (
        "Budget line {bl} ({bl_name}) needs to be reconciled for Q{q} before the treasury deadline.",
        "The Q{q} expenditure on budget line {bl} ({bl_name}) does not match the commitments register.",
    ),
    "audit": (
        "Internal audit raised query {aq} about {topic}.",
        "Audit query {aq} asks for supporting documents on {topic}.",
    ),
    "tender": (
        "Tender {tender} for {project} closes in three weeks and the documents are not ready.",
        "Five bids were received for tender {tender} ({project}).",
    ),
    "complaint": (
        "Residents of {district} reported {problem} near {place} (complaint {cref}).",
        "Complaint {cref} from {district}: {problem} near {place}.",
    ),
    "licence": (
        "The {license} for {supplier} expires at the end of the month.",
        "{supplier} applied to renew its {license} for the premises in {district}.",
    ),
    "memo": (
        "The chief officer wants a two-page memo on {topic} before the {committee} meets.",
        "We need a short brief for the {committee} on {topic}.",
    ),
    "site": (
        "The contractor on {project} in {district} says the work is 70% complete.",
        "Site visit to {project} to check progress against the bill of quantities.",
    ),
}

_SENTENCES = (
    "The amount must be checked against budget line {bl} ({bl_name}) before payment is approved.",
    "Remaining balance on budget line {bl} is {amount2} after commitments.",
    "Please verify the {doc} against the stores ledger.",
    "Attach the signed {doc} and the {doc2} before forwarding the file to the {office}.",
    "Coordinate with the {office} so that the same invoice is not paid twice.",
    "The {committee} asked for a revised estimate by {weekday}.",
    "A follow-up visit is scheduled for {weekday} morning.",
    "The file still lacks {missing}.",
    "If the documents are incomplete, return the file with a list of what is missing.",
    "{contact} at the {office} confirmed that the {doc} is {state}.",
    "The deadline moved because {reason}.",
    "{name} has the paper file; the scanned copy is in the shared folder.",
    "The applicant paid the fee of {amount2}, receipt number {receipt}.",
    "Photos of {finding2} were taken and are attached to the report.",
    "Residents near {place} have complained twice since January.",
    "Use the standard reporting template from the {office}.",
    "Payment voucher {pv} was raised on {weekday}.",
    "The previous invoice from {supplier} was rejected for a wrong KRA PIN.",
    "Copy the reply to the ward administrator for {district}.",
    "Check whether the {license} is still valid before any payment is made.",
    "The contractor asked for an extension of {days} days.",
    "The {office} wants the figures split by ward.",
    "Retention of 10% applies until the completion certificate is issued.",
    "{name} will present this at the {committee} on {weekday}.",
    "There is no network at the site, so the report will be typed up at home.",
    "Prices were compared with the three quotations on file.",
    "Keep the original receipts; the auditors will ask for them.",
    "The ward administrator for {district} should sign the acknowledgement.",
)

_NOTES = (
    "Called {supplier}; they will send the corrected invoice by {weekday}.",
    "Scanned copy uploaded to the shared folder.",
    "Waiting for the {office} to sign off.",
    "Site visit done, photos taken: {finding2}.",
    "Spoke to {contact} at the {office}: the {doc} is {state}.",
    "Payment voucher {pv} raised, {amount2}.",
    "No network at the site today, will update tomorrow.",
    "Reminder sent to {contact}.",
    "{name}, can you check the {doc}? I cannot open it on the phone.",
    "Done from my side, over to {name}.",
    "The {committee} moved the meeting to {weekday}.",
    "Applicant came to the office; told them the file lacks {missing}.",
    "Treasury system down again, will retry in the evening.",
    "Budget line {bl} has {amount2} left.",
    "Filed in the registry under {inv}.",
    "Blocked: {reason}.",
)


def _fill(template: str, ctx: dict, rng: random.Random, members: Sequence[str]) -> str:
    doc, doc2 = rng.sample(DOCS, 2)
    extra = {
        "doc": doc,
        "doc2": doc2,
        "amount2": _amount(rng),
        "weekday": rng.choice(WEEKDAY_NAMES),
        "missing": rng.choice(MISSING),
        "contact": rng.choice(CONTACTS),
        "state": rng.choice(STATES),
        "reason": rng.choice(REASONS),
        "name": FULL_NAMES.get(m := rng.choice(members), m.capitalize()).split()[0],
        "receipt": f"R{rng.randrange(100000, 999999)}",
        "finding": rng.choice(FINDINGS),
        "finding2": rng.choice(FINDINGS),
        "days": rng.choice((7, 10, 14, 21, 30)),
    }
    return template.format(**{**extra, **ctx})


def _opener(ctx: dict, rng: random.Random, members: Sequence[str]) -> str:
    return _fill(rng.choice(_OPENERS[ctx["type"]]), ctx, rng, members)


def _sentence(ctx: dict, rng: random.Random, members: Sequence[str]) -> str:
    return _fill(rng.choice(_SENTENCES), ctx, rng, members)


def _title(ctx: dict, rng: random.Random) -> str:
    return rng.choice(_TITLES[ctx["type"]]).format(**ctx)


# -- the simulation -----------------------------------------------------------------------


class _Task:
    __slots__ = ("entity", "ctx", "title", "sentences", "status", "assignee", "due", "priority", "last_op", "touched")

    def __init__(self, entity: bytes, ctx: dict):
        self.entity = entity
        self.ctx = ctx
        self.title = ""
        self.sentences: list[str] = []
        self.status = int(Status.OPEN)
        self.assignee: str | None = None
        self.due: int | None = None
        self.priority = int(Priority.NORMAL)
        self.last_op: bytes | None = None
        self.touched = 0


def _wall_times(rng: random.Random, n: int, week_start: _dt.datetime) -> list[int]:
    """n sorted wall-clock times (ms) over one week, weighted to weekday working hours."""
    day_w = (1.0, 1.0, 1.0, 1.0, 0.9, 0.15, 0.05)
    hour_w = [0.02] * 24  # UTC; 04:00-16:00 UTC is 07:00-19:00 in East Africa
    for h, w in ((4, 0.3), (5, 0.8), (6, 1.0), (7, 1.0), (8, 0.9), (9, 0.6), (10, 0.8), (11, 1.0), (12, 0.9),
                 (13, 0.7), (14, 0.4), (15, 0.3), (16, 0.25), (17, 0.2), (18, 0.1)):
        hour_w[h] = w
    start = int(week_start.replace(hour=0).timestamp() * 1000)
    out = []
    for _ in range(n):
        d = rng.choices(range(7), day_w)[0]
        h = rng.choices(range(24), hour_w)[0]
        out.append(start + ((d * 24 + h) * 3600 + rng.randrange(3600)) * 1000 + rng.randrange(1000))
    out.sort()
    return out


# change kinds and their weights after the initial board (creations are set per run)
_EDIT_WEIGHTS = {"routing": 35, "description": 25, "note": 15, "title": 10}


def generate(
    seed: int = 2024,
    n_changes: int = 1000,
    n_tasks: int = 50,
    members: Sequence[str] = DEFAULT_MEMBERS,
    start: _dt.datetime = WEEK_START,
) -> list[tuple[str, Op]]:
    """A week of team activity as ``[(device_name, op), ...]`` in wall-time order.

    Each member has one device, named after them. ``start`` is the Monday the
    week begins (UTC, 07:00). The same arguments always give the same ops. See
    the module docstring for the model.
    """
    members = tuple(members)
    if not members or n_changes < 1 or n_tasks < 1:
        raise ValueError("need at least one member, one change and one task")
    rng = random.Random(seed)
    times = _wall_times(rng, n_changes, start)
    clocks = {m: hlc.Clock() for m in members}
    # creations make ~15% of all changes: the initial board plus a steady trickle
    n_initial = min(n_tasks, n_changes)
    later = max(0.0, 0.15 * n_changes - n_initial) / max(1, n_changes - n_initial)
    weights = dict(_EDIT_WEIGHTS)
    weights["create"] = later / (1 - later) * sum(_EDIT_WEIGHTS.values()) if later < 1 else 1e9
    kinds, kind_w = zip(*weights.items())

    tasks: list[_Task] = []
    recent: list[_Task] = []  # most recently touched first
    out: list[tuple[str, Op]] = []
    # people create more on Monday and the team lead (the first member) creates most tasks
    creator_w = [3.0] + [1.0] * (len(members) - 1)
    today_day = date_to_day(start.date())

    def pick_task() -> _Task:
        live = [t for t in tasks if t.status != Status.DONE] or tasks
        if recent and rng.random() < 0.55:
            pool = [t for t in recent[:8] if t.status != Status.DONE] or recent[:8]
            return rng.choice(pool)
        return rng.choice(live)

    def emit(author: str, task: _Task, now_ms: int, **values) -> None:
        ts = clocks[author].now(now_ms)
        op = make_op(Kind.TASK, task.entity, ts, task.last_op, **values)
        task.last_op = make_op_id(ts, device_id(author))
        task.touched = now_ms
        if task in recent:
            recent.remove(task)
        recent.insert(0, task)
        out.append((author, op))

    for i, now_ms in enumerate(times):
        kind = "create" if i < n_initial else rng.choices(kinds, kind_w)[0]
        if kind == "create":
            author = rng.choices(members, creator_w)[0]
            task = _Task(rng.randbytes(8), _new_context(rng, members))
            task.title = _title(task.ctx, rng)
            task.sentences = [_opener(task.ctx, rng, members)] + [
                _sentence(task.ctx, rng, members) for _ in range(rng.randint(1, 4))
            ]
            task.assignee = rng.choice(members)
            task.priority = rng.choices(range(4), (2, 6, 3, 1))[0]
            task.due = today_day + (now_ms - int(start.timestamp() * 1000)) // 86_400_000 + rng.choice(
                (1, 2, 3, 5, 7, 7, 10, 14, 21, 30)
            )
            needs = rng.choices((0, 1, 2, 3, 4, 5, 6, 7), (2, 3, 3, 6, 3, 1, 1, 1))[0]
            tasks.append(task)
            emit(
                author, task, now_ms,
                title=task.title, description=" ".join(task.sentences), priority=task.priority,
                due=task.due, needs=needs, assignee=task.assignee,
            )
            continue

        task = pick_task()
        # the assignee makes most changes to their task; others chip in
        author = task.assignee if task.assignee and rng.random() < 0.65 else rng.choice(members)
        if kind == "routing":
            what = rng.choices(("status", "assign", "due", "priority", "combo"), (45, 18, 17, 12, 8))[0]
            values: dict = {}
            if what in ("status", "combo"):
                nxt = {
                    Status.OPEN: (Status.IN_PROGRESS, Status.IN_PROGRESS, Status.BLOCKED),
                    Status.IN_PROGRESS: (Status.DONE, Status.DONE, Status.BLOCKED, Status.OPEN),
                    Status.BLOCKED: (Status.IN_PROGRESS, Status.OPEN),
                    Status.DONE: (Status.IN_PROGRESS, Status.OPEN),  # reopened
                }[Status(task.status)]
                task.status = int(rng.choice(nxt))
                values["status"] = task.status
            if what in ("assign", "combo"):
                others = [m for m in members if m != task.assignee]
                task.assignee = rng.choice(others) if others and rng.random() < 0.93 else None
                values["assignee"] = task.assignee
            if what == "due" or (what == "combo" and rng.random() < 0.5):
                task.due = None if rng.random() < 0.04 else (task.due or today_day + 7) + rng.choice((-2, -1, 1, 2, 3, 5, 7, 14))
                values["due"] = task.due
            if what == "priority":
                task.priority = rng.choice([p for p in range(4) if p != task.priority])
                values["priority"] = task.priority
            emit(author, task, now_ms, **values)
        elif kind == "description":
            s = task.sentences
            r = rng.random()
            if r < 0.45:  # add a sentence or two
                s.extend(_sentence(task.ctx, rng, members) for _ in range(rng.choice((1, 1, 2))))
            elif r < 0.75 and len(s) > 1:  # reword one sentence
                s[rng.randrange(1, len(s))] = _sentence(task.ctx, rng, members)
            elif r < 0.87 and len(s) > 2:  # drop an obsolete sentence, add the news
                del s[rng.randrange(1, len(s))]
                s.append(_sentence(task.ctx, rng, members))
            else:  # rewrite from scratch
                s[:] = [_opener(task.ctx, rng, members)] + [_sentence(task.ctx, rng, members) for _ in range(rng.randint(1, 4))]
            del s[1 : max(1, len(s) - 9)]  # descriptions stay under ~10 sentences
            emit(author, task, now_ms, description=" ".join(s))
        elif kind == "note":
            text = _fill(rng.choice(_NOTES), task.ctx, rng, members)
            if rng.random() < 0.3:
                text += " " + _sentence(task.ctx, rng, members)
            emit(author, task, now_ms, note=text)
        else:  # title
            r = rng.random()
            base_title = task.title.removeprefix("URGENT: ").removesuffix(" (revised)")
            if r < 0.3:
                task.title = "URGENT: " + base_title
            elif r < 0.5:
                task.title = base_title + " (revised)"
            elif r < 0.7:  # correct a detail (district, number) and re-derive
                task.ctx["district"] = rng.choice(DISTRICTS)
                task.ctx["inv"] = f"INV-2024-{rng.randrange(100, 2000):04d}"
                task.title = _title(task.ctx, rng)
            else:
                task.title = _title(task.ctx, rng)
            emit(author, task, now_ms, title=task.title)
    return out


# -- helpers for consumers ----------------------------------------------------------------


def by_device(changes: Iterable[tuple[str, Op]]) -> dict[str, list[Op]]:
    """Each device's ops in author (HLC) order."""
    out: dict[str, list[Op]] = {}
    for name, op in changes:
        out.setdefault(name, []).append(op)
    return out


def describe(changes: Sequence[tuple[str, Op]]) -> dict[str, int]:
    """Counts of changes by what they touch, for reports."""
    c: Counter = Counter()
    for _, op in changes:
        if op.base is None:
            c["create"] += 1
        elif op.content:
            c[next(iter(("title", "description", "note")[t - 32] for t in op.content))] += 1
        else:
            c["routing"] += 1
    return dict(c)


if __name__ == "__main__":
    import sys

    ch = generate(seed=int(sys.argv[1]) if len(sys.argv) > 1 else 2024)
    print(len(ch), "changes;", describe(ch), "; per device:", {k: len(v) for k, v in by_device(ch).items()})
    for name, op in ch[:3] + ch[200:206]:
        print(name, op.hlc, op.entity.hex(), op.base.hex() if op.base else None, op.named())
