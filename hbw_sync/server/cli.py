"""The ``hbw-relay`` command line: office IT's tool. Each command is one call into ``admin``."""

from __future__ import annotations

import functools
import io
import ssl
from pathlib import Path
from typing import Any, Callable

import click

from .. import __version__, allocation, timefmt
from ..cli_common import HbwGroup, emit, is_interactive, json_option
from ..i18n import N_, _, ngettext
from ..ops import MAX_CAPACITY
from . import admin, cli_equipment, cli_storage, cli_teams, db, limits, storage, teams
from .app import MIN_FREE_MB, RelayConfig
from .connections import ConnectionLimits
from .office import OfficeConfig
from .relay import now_ms as relay_now_ms
from .runner import log_to_stderr
from .runner import serve as run_server
from .workers import WorkerPool, worker_count


class RelayGroup(HbwGroup):
    """The relay's commands: a fault of the relay's disk is told in words, exit 74 (``db.storage_error``)."""

    translate = staticmethod(db.storage_error)


DATA_HELP = N_("Relay data directory (database and relay key; env HBW_RELAY_DATA).")


def _remember_data(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None:
        ctx.meta["hbw_relay_data"] = value  # ctx.meta is shared by the whole command line
    return value


def _data_flag(required: bool = False) -> Any:
    return click.option("--data", type=click.Path(file_okay=False, path_type=Path), envvar="HBW_RELAY_DATA",
                        required=required, callback=_remember_data, is_eager=True, help=DATA_HELP)


def dir_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """--data, accepted wherever a person puts it: 'hbw-relay --data X devices revoke ID', 'hbw-relay
    devices --data X revoke ID', '... revoke ID --data X', or HBW_RELAY_DATA in the environment."""
    @functools.wraps(f)
    def wrapper(*args: Any, data: Path | None = None, **kw: Any) -> Any:
        data = data or click.get_current_context().meta.get("hbw_relay_data")
        if data is None:
            raise click.UsageError(_("Missing option '--data': the relay's data directory (or set HBW_RELAY_DATA)."))
        return f(*args, data=data, **kw)
    return _data_flag()(wrapper)


def data_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``dir_option`` and ``--team ID``: on a multi-team directory, the command works on that team's
    one-team directory (``cli_teams.resolve_data``), and is refused without it."""
    @functools.wraps(f)
    def wrapper(*args: Any, data: Path, team_id: str | None = None, **kw: Any) -> Any:
        return f(*args, data=cli_teams.resolve_data(data, team_id), **kw)
    return cli_teams.team_flag(dir_option(wrapper))


@click.group(cls=RelayGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hbw-relay")
@_data_flag()
@json_option
def cli(data: Path | None) -> None:
    """The office relay for hbw-sync: enrolls devices and passes sealed batches between them.

    The relay sees who holds which task (routing), never titles, descriptions
    or document bytes. Typical set-up: 'init', then 'serve', then one
    'invite' per official; 'devices revoke' when a laptop is lost.
    Backups: 'backup' works while the relay runs.
    """


@cli.command()
@_data_flag()
@click.option("--team", help="The team's name, e.g. 'District Finance Office'.")
@click.option("--url", help="The URL devices will use to reach this relay (put into invites).")
@click.option("--multi", type=click.Path(file_okay=False, path_type=Path), metavar="[DIR]", is_flag=False,
              flag_value=Path(""),
              help="Make DIR (or the --data directory) a multi-team relay directory instead: one relay process "
                   "serves many teams ('hbw-relay team add NAME'), each under URL/t/ID.")
@cli_storage.database_option
@json_option
@click.pass_context
def init(ctx: click.Context, data: Path | None, team: str | None, url: str | None, multi: Path | None,
         database: str | None) -> None:
    """Create a relay for a team in a new data directory (and, with --database, in PostgreSQL)."""
    if multi is not None:
        if multi == Path(""):  # '--multi' alone: the --data directory (or HBW_RELAY_DATA)
            multi = data or ctx.meta.get("hbw_relay_data")
            if multi is None:
                raise click.UsageError(_("Missing option '--data': the relay's data directory (or set "
                                         "HBW_RELAY_DATA)."))
        if team:
            raise click.UsageError(_("--multi makes a directory for many teams: add each with 'hbw-relay team add "
                                     "NAME', not --team"))
        r = teams.init_multi(multi, database, url)
        emit(ctx, r, _("Multi-team relay directory made in {data}.\nNext: 'hbw-relay team add --data {data} NAME', "
                       "then 'hbw-relay serve --data {data}'.").format(data=multi))
        return
    data = data or ctx.meta.get("hbw_relay_data")
    if data is None:
        raise click.UsageError(_("Missing option '--data': the relay's data directory (or set HBW_RELAY_DATA)."))
    if not team:
        raise click.UsageError(_("Missing option '--team': the team's name."))
    r = admin.init(data, team, url, database)
    emit(ctx, r, _("Relay for {team!r} created in {data}.\nRelay key: {key}\n"
                   "Next: 'hbw-relay serve --data {data}' and 'hbw-relay invite --data {data} NAME'.")
         .format(team=r["team"], data=data, key=r["relay_key"]))


@cli.command()
@dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port to listen on (0: any free port).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="TLS certificate (PEM).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM).")
@click.option("--auto-rebalance", help="Also rebalance (and apply) every INTERVAL, e.g. 1h; off by default.")
@click.option("--stale-after", default="72h", show_default=True, help="Unreachable threshold for --auto-rebalance.")
@click.option("--default-capacity", type=click.IntRange(1, MAX_CAPACITY), default=allocation.DEFAULT_CAPACITY,
              show_default=True, help="For --auto-rebalance: open tasks at full load when a member has not said.")
@click.option("--min-free-mb", default=MIN_FREE_MB, show_default=True, type=float,
              help="/healthz says unhealthy (503) when the data disk has less free space than this.")
@click.option("--max-per-address", default=ConnectionLimits.per_address, show_default=True, type=click.IntRange(1),
              help="Connections one IP address may hold (raise it if many devices share one address, e.g. a NAT).")
@click.option("--admin", "with_admin", is_flag=True, help="Also serve the office page for IT (devices, invites, "
              "equipment, backups, audit) on --admin-port, behind the admin token.")
@click.option("--chunk-quota-gb", default=limits.CHUNK_QUOTA / 1024**3, show_default=True, type=click.FloatRange(0.001),
              callback=cli_teams.finite_size,
              help="GiB of document chunks the team may keep at this relay; uploads past it are refused. "
                   "Kept in the relay's settings: 'bundle ingest' applies the same quota. On a multi-team "
                   "directory: the default of teams without their own ('hbw-relay team quota').")
@click.option("--bundle-max-gb", default=limits.BUNDLE_MAX / 1024**3, show_default=True,
              type=click.FloatRange(0.001, limits.BUNDLE_MAX / 1024**3), callback=cli_teams.finite_size,
              help="GiB: the largest bundle POST /v1/bundle takes (read as a stream, spooled in the data "
                   "directory, so keep that much disk free); a larger one is refused before it is read.")
@click.option("--admin-host", default="127.0.0.1", show_default=True,
              help="Address of the office page; only loopback unless --admin-remote.")
@click.option("--admin-port", default=8766, show_default=True, type=int, help="Port of the office page (0: any free).")
@click.option("--admin-remote", is_flag=True, help="Allow the office page on a non-loopback address (an SSH tunnel "
              "to loopback is safer: the page has no TLS).")
@cli_storage.database_option
@click.option("--workers", default="1", show_default=True, metavar="N|auto",
              help="Relay processes sharing the port (auto: one per core), on SQLite or PostgreSQL.")
@click.option("--check-processes", default=0, show_default=True, type=click.IntRange(0, 64),
              help="Processes that check signatures and batches beside each relay process (0: it checks them "
                   "itself). For a SQLite relay on a machine with idle cores.")
@click.option("--max-open-teams", default=256, show_default=True, type=click.IntRange(1),
              help="Multi-team directory: teams kept open at once (the least recently used idle one is closed).")
@click.option("--team-idle", default=600.0, show_default=True, type=click.FloatRange(1),
              help="Multi-team directory: seconds without a request before a team is closed.")
def serve(data: Path, host: str, port: int, tls_cert: str | None, tls_key: str | None, auto_rebalance: str | None,
          stale_after: str, default_capacity: int, min_free_mb: float, max_per_address: int, with_admin: bool,
          admin_host: str, admin_port: int, admin_remote: bool, chunk_quota_gb: float,
          bundle_max_gb: float = limits.BUNDLE_MAX / 1024**3, database: str | None = None, workers: str = "1", check_processes: int = 0, max_open_teams: int = 256,
          team_idle: float = 600.0) -> None:
    """Run the relay until stopped (Ctrl-C or SIGTERM). One JSON log line per request.

    With --tls-cert/--tls-key (a self-signed certificate is fine), invites made
    afterwards for an https URL pin the certificate, so devices trust exactly it.

    On a multi-team directory ('init --multi'): --tls-cert/--tls-key serve every
    team over TLS and invites for any team pin it; --auto-rebalance rebalances
    every team in turn (with --workers N, worker 0 alone); --chunk-quota-gb is
    the default of teams without their own ('team quota'). --admin is not yet
    served there.

    With --admin, the office page also runs, on 127.0.0.1:8766 by default. Its
    admin token is printed the first time and kept in DATA/admin.token (0600).

    With --workers N (SQLite or PostgreSQL), N relay processes share the port and
    every core is used; a worker that dies is started again, and SIGTERM stops
    them all.
    """
    n_workers = worker_count(workers)
    multi = teams.is_multi(data)
    if multi and with_admin:
        raise click.UsageError(_("the office page (--admin) does not yet serve a multi-team relay: serve without "
                                 "--admin, and use each team's commands with --team ID instead ('hbw-relay "
                                 "devices --team ID', 'invite --team ID', 'audit --team ID', 'backup --team ID')"))
    ctx = None
    if tls_cert or tls_key:
        if not (tls_cert and tls_key):
            raise click.UsageError(_("--tls-cert and --tls-key go together"))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(tls_cert, tls_key)
        # Invites made from now on pin this certificate (a self-signed one is fine); on a multi-team
        # directory, invites for every team, including teams added later.
        admin.set_tls_certificate(data, Path(tls_cert))
    # Kept in the relay's settings, so that 'bundle ingest' (another process) refuses at the same quota;
    # on a multi-team directory, once for all teams, as the default of those without their own ('team quota').
    if multi:
        teams.keep_serve_settings(data, chunk_quota=int(chunk_quota_gb * 1024**3))
    else:
        admin.set_chunk_quota(data, int(chunk_quota_gb * 1024**3), database)
    cfg = RelayConfig(data=data, host=host, port=port,
                      rebalance_every_s=parse_hours(auto_rebalance) * 3600 if auto_rebalance else None,
                      stale_hours=parse_hours(stale_after), default_capacity=default_capacity,
                      min_free_mb=min_free_mb, connections=ConnectionLimits(per_address=max_per_address),
                      chunk_quota=int(chunk_quota_gb * 1024**3), bundle_max=int(bundle_max_gb * 1024**3),
                      database=database, check_processes=check_processes,
                      max_open_teams=max_open_teams, team_idle_s=team_idle)
    office_cfg = OfficeConfig(admin_host, admin_port, admin_remote) if with_admin else None

    def office_ready(url: str, token: str | None) -> None:
        click.echo(_("{time} office page on {url}").format(time=timefmt.iso_utc(relay_now_ms()), url=url), err=True)
        if token:
            click.echo(_("Admin token for the office page (shown once; kept in {file}): {token}").format(
                file=data / admin.TOKEN_FILE, token=token), err=True)
        else:
            click.echo(_("Log in with the admin token kept in {file}.").format(file=data / admin.TOKEN_FILE),
                       err=True)

    def ready(url: str) -> None:
        click.echo(_("{iso_utc} hbw-relay listening on {url}").format(iso_utc=timefmt.iso_utc(relay_now_ms()), url=url),
                   err=True)
        if n_workers > 1:
            click.echo(ngettext("{iso_utc} {n} relay process serves it", "{iso_utc} {n} relay processes serve it",
                                n_workers).format(iso_utc=timefmt.iso_utc(relay_now_ms()), n=n_workers), err=True)

    if n_workers == 1:
        run_server(cfg, ctx, ready=ready, office_cfg=office_cfg, office_ready=office_ready)
        return
    if office_cfg is not None:
        from .office import check_bind

        check_bind(office_cfg)  # refuse before anything listens
    if multi:
        teams.read_marker(data)
    else:
        storage.open_store(data, database).close()  # no relay there, or PostgreSQL down: say so before any worker
    log_to_stderr()
    WorkerPool(cfg, n_workers, (tls_cert, tls_key) if ctx and tls_cert and tls_key else None, office_cfg).run(ready, office_ready)


@cli.command()
@data_option
@click.argument("member")
@click.option("--role", type=click.Choice(["member", "supervisor"]), default="member", show_default=True,
              help="Supervisors may reassign anyone's work and share the team key with new devices.")
@click.option("--url", help="URL devices use to reach the relay (default: the one given at init).")
@click.option("--days", default=14, show_default=True, type=click.IntRange(1, 365), help="Days before the invite expires.")
@click.option("--words", is_flag=True, help="Also a short code of words to read out by phone (valid 24 hours).")
@click.option("--asset", metavar="TAG", help="The equipment (asset tag in the register) this device is on: it is lent "
              "to MEMBER, and the device that joins is recorded as that equipment's.")
@click.option("--qr", is_flag=True, help="Also print the invite as a QR code in the terminal.")
@click.option("--qr-file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png",
              help="Also save the invite as a QR code image (PNG or SVG, by the name's ending).")
@json_option
@click.pass_context
def invite(ctx: click.Context, data: Path, member: str, role: str, url: str | None, days: int, words: bool,
           asset: str | None, qr: bool, qr_file: Path | None) -> None:
    """Make a one-time invite for MEMBER's device. Hand it over in person or by phone, not by email.

    --words adds a code of a number and five words that a person can read out by phone; the device
    then joins with 'hbw-sync join --relay URL CODE'. The code only unlocks the full invite, which
    still pins this relay's key, so it is as safe to use as the full invite.
    """
    url = cli_teams.team_relay_url(url)
    if words:
        inv, code = admin.invite_with_code(data, member, role, url, days, asset=asset)
    else:
        inv, code = admin.invite(data, member, role, url, days, asset=asset), None
    text = inv.encode()
    out: dict[str, Any] = {"member": inv.member, "role": inv.role, "invite": text, "relay": inv.url,
                           "expires_days": days, "words": code, "qr_file": None, "asset": asset}
    if qr or qr_file:
        import segno  # only here: the rest of the relay does not need it

        image = segno.make(text.upper(), error="m")  # upper case: QR's compact alphanumeric mode
        if qr_file:
            image.save(str(qr_file), scale=8, border=4)
            out["qr_file"] = str(qr_file)

    def show() -> None:
        click.echo(_("Invite for {member} ({role}), valid {days} days, usable once:\n\n  {text}\n").format(member=inv.member, role=inv.role, days=days, text=text))
        click.echo(_("On the device: hbw-sync join {v}...").format(v=text[:12]))
        click.echo(_("Unless it is the team's first device, it gets the team key only when a supervisor "
              "approves the code it shows (hbw-sync team approve CODE); a supervisor's 'hbw-sync "
              "team invite' needs no code."))
        if code:
            spoken = code.replace("-", " ")
            click.echo(_("\nBy phone (valid 24 hours, ends when used): read out  {spoken}\nOn the "
                  "device: hbw-sync join --relay {url} {code}").format(spoken=spoken, url=inv.url, code=code))
        if qr:
            buf = io.StringIO()
            image.terminal(out=buf, compact=True)
            click.echo("\n" + _("Or scan this QR code:") + "\n" + buf.getvalue())
        if qr_file:
            click.echo(_("QR code saved to {qr_file}.").format(qr_file=qr_file))
        if asset:
            click.echo(_("Equipment {tag} is lent to {member}; the device that joins with this invite is recorded "
                         "as its device.").format(tag=asset.strip(), member=inv.member))

    emit(ctx, out, show)


@cli.group(cls=RelayGroup, invoke_without_command=True)
@_data_flag()
@cli_teams.team_flag
@json_option
@click.pass_context
def devices(ctx: click.Context, data: Path | None, team_id: str | None = None) -> None:
    """List enrolled devices: whose, enrolled and revoked when, last seen ('devices revoke' to revoke)."""
    if ctx.invoked_subcommand:
        return
    data = data or ctx.meta.get("hbw_relay_data")
    if data is None:
        raise click.UsageError(_("Missing option '--data': the relay's data directory (or set HBW_RELAY_DATA)."))
    rows = admin.devices(cli_teams.resolve_data(data, team_id))

    def text() -> None:
        if not rows:
            click.echo(_("No devices enrolled."))
        for r in rows:
            state = _("REVOKED {when}").format(when=timefmt.human(r["revoked_ms"])) if r["revoked_ms"] else _("active")
            click.echo(_("{device}  {member:12}  enrolled {human}  last seen {human2}  {state}  {v}").format(device=r['device'], member=r['member'], human=timefmt.human(r['enrolled_ms']), human2=timefmt.human(r['last_seen_ms']), state=state, v=r['label'] or ''))

    emit(ctx, rows, text)


@devices.command("revoke")
@data_option
@click.argument("device")
@click.option("--yes", "-y", is_flag=True, help="Do not ask to confirm (for scripts).")
@json_option
@click.pass_context
def devices_revoke(ctx: click.Context, data: Path, device: str, yes: bool) -> None:
    """Revoke DEVICE (an id or unambiguous prefix): a lost or returned laptop can no longer sync.

    This cannot be undone (a found laptop joins again with a new invite). The
    next supervisor device to sync rotates the team key, so the revoked device
    cannot read anything new. Asks to confirm unless --yes.
    """
    d = admin.find_device(data, device)
    if d["revoked_ms"]:
        emit(ctx, {**d, "revoked": True}, _("Device {v} of {member} was already revoked ({human}); nothing changed.").format(v=d['device'][:8], member=d['member'], human=timefmt.human(d['revoked_ms'])))
        return
    what = (_("device {device} of {member} ({label}), last seen {when}") if d["label"] else
            _("device {device} of {member}, last seen {when}")).format(
        device=d["device"][:8], member=d["member"], label=d["label"], when=timefmt.human(d["last_seen_ms"]))
    if not yes:
        if not is_interactive():
            raise click.UsageError(_("revoking {what} cannot be undone: add --yes to confirm").format(what=what))
        if not click.confirm(_("Revoke {what}? It will no longer sync, and this cannot be undone").format(what=what), default=False,
                             err=True):
            click.echo(_("Nothing changed."), err=True)
            ctx.exit(1)
    r = admin.revoke(data, d["device"])
    emit(ctx, r, _("Device {device} of {member} is revoked. The team key will rotate at the next "
          "supervisor sync.").format(device=r['device'], member=r['member']))


@cli.command()
@data_option
@json_option
@click.pass_context
def members(ctx: click.Context, data: Path) -> None:
    """List team members, their role, devices and when they were last seen."""
    rows = admin.members(data)

    def text() -> None:
        for r in rows:
            click.echo(_("{member:12}  {role:10}  devices {active_devices}/{devices}  last seen {human}").format(member=r['member'], role=r['role'], active_devices=r['active_devices'], devices=r['devices'], human=timefmt.human(r['last_seen_ms'])))

    emit(ctx, rows, text)


@cli.command()
@data_option
@click.option("--limit", default=50, show_default=True, type=int, help="How many entries, newest first.")
@json_option
@click.pass_context
def audit(ctx: click.Context, data: Path, limit: int) -> None:
    """Who did what, newest first, in local time: enrollments, revocations, keys, rebalancing, and every
    signed batch by member and device. --json gives the same with ISO times and the raw details."""
    rows = admin.audit_log(data, limit)

    def text() -> None:
        for r in rows:
            click.echo(f"{r['time']}  {r['who']} {r['what']}.")
        if not rows:
            click.echo(_("Nothing recorded yet."))

    # JSON: "time" is the entry's time in the one form (from time_ms); the local and human forms
    # ("when", "time") are for the text and the office page.
    emit(ctx, [{k: v for k, v in r.items() if k not in ("when", "time")} for r in rows], text)


def parse_hours(text: str) -> float:
    t = text.strip().lower()
    try:
        if t.endswith("h"):
            return float(t[:-1])
        if t.endswith("d"):
            return float(t[:-1]) * 24
        if t.endswith("m"):
            return float(t[:-1]) / 60
        return float(t)
    except ValueError:
        raise click.BadParameter(_("{text!r}: use e.g. 72h, 3d or 30m").format(text=text)) from None


@cli.command()
@data_option
@click.option("--apply", is_flag=True, help="Issue the moves (relay-signed); without it, only show the plan.")
@click.option("--to", "to", metavar="MEMBER", help="Give work only to MEMBER (even a supervisor: naming them is the opt-in).")
@click.option("--exclude", multiple=True, metavar="MEMBER", help="Give MEMBER no work in this run (repeatable).")
@click.option("--max-moves", type=click.IntRange(min=0), help="At most N moves in this run (stuck tasks first).")
@click.option("--default-capacity", type=click.IntRange(1, MAX_CAPACITY), default=allocation.DEFAULT_CAPACITY,
              show_default=True, help="Open tasks at full load for members who have not set 'profile --capacity'.")
@click.option("--stale-after", default="72h", show_default=True,
              help="Members not seen for this long (and with no office day before the due date) are unreachable.")
@json_option
@click.pass_context
def rebalance(ctx: click.Context, data: Path, apply: bool, to: str | None, exclude: tuple[str, ...],
              max_moves: int | None, default_capacity: int, stale_after: str) -> None:
    """Move work that cannot progress where it sits, then even the load (dry run by default).

    A task is stuck when its holder is away past its due date, unreachable, or
    lacks what it needs (laptop, internet, an office day before it is due).
    Work is spread by open tasks relative to each member's capacity. Pinned and
    done tasks never move, started tasks move only when stuck; nobody away or
    revoked receives work, and supervisors only if they opted in.
    """
    r = admin.rebalance(data, apply, parse_hours(stale_after), to=to, exclude=exclude, max_moves=max_moves,
                        default_capacity=default_capacity)

    def text() -> None:
        if not r["moves"]:
            click.echo(_("Nothing to move: every open task can progress where it sits, and the load is even."))
        for m in r["moves"]:
            click.echo(_("Task {v}: {v2} -> {to}. Why: {reason}.").format(v=m['task'][:6], v2=m['from'] or _('nobody'), to=m['to'], reason=m['reason']))
        for s in r["stuck"]:
            click.echo(_("Task {v} stays where it is: {reason}.").format(v=s['task'][:6], reason=s['reason']))
        for x in r["left_out"]:
            click.echo(_("{member} receives no work: {reason}.").format(member=x['member'], reason=x['reason']))
        if r["loads"]:
            click.echo(_("Open tasks afterwards: {loads}.").format(loads=", ".join(
                _("{member} {open} of {capacity}").format(member=x["member"], open=x["open"], capacity=x["capacity"])
                for x in r["loads"])))
        if r["moves_left"]:
            click.echo(ngettext("Stopped at --max-moves: at least {moves_left} more move would help; run again.",
                                  "Stopped at --max-moves: at least {moves_left} more moves would help; run again.",
                                  r['moves_left']).format(moves_left=r['moves_left']))
        if r["moves"]:
            click.echo(_("Moves issued; devices learn them at their next sync.") if r["applied"]
                       else _("Dry run: nothing changed. Run again with --apply to issue these moves."))

    emit(ctx, r, text)


@cli.command()
@data_option
@click.option("--default-capacity", type=click.IntRange(1, MAX_CAPACITY), default=allocation.DEFAULT_CAPACITY,
              show_default=True, help="Capacity shown for members who have not set 'profile --capacity'.")
@json_option
@click.pass_context
def workload(ctx: click.Context, data: Path, default_capacity: int) -> None:
    """Per member: open, overdue and urgent tasks, what they can do, when last seen."""
    rows = admin.workload(data, default_capacity)

    def text() -> None:
        yn = {True: _("yes"), False: _("no"), None: _("not said")}
        click.echo(f"{_('MEMBER'):10}  {_('OPEN'):>9}  {_('LATE'):>4}  {_('URG'):>3}  {_('LAPTOP'):8}  {_('NET'):8}  "
                   f"{_('OFFICE'):8}  {_('AWAY UNTIL'):10}  {_('LAST SEEN')}")
        for r in rows:
            load = f"{r['open']}/{r['capacity']}" + ("" if r["takes_work"] else "*")
            click.echo(f"{r['member']:10}  {load:>9}  {r['overdue']:>4}  {r['urgent']:>3}  {yn[r['laptop']]:8}  "
                       f"{yn[r['internet']]:8}  {','.join(r['office_days']) or '-':8}  {r['away_until'] or '-':10}  "
                       f"{timefmt.human(r['last_seen_ms'])}")
        if any(not r["takes_work"] for r in rows):
            click.echo(_("OPEN is open tasks / capacity. * a supervisor who receives no rebalanced work "
                  "(hbw-sync profile --takes-work to opt in)."))

    emit(ctx, rows, text)


@cli.command()
@data_option
@json_option
@click.pass_context
def conflicts(ctx: click.Context, data: Path) -> None:
    """Concurrent changes to who holds a task (or its status), and how each was settled."""
    rows = admin.conflicts(data)

    def text() -> None:
        if not rows:
            click.echo(_("No conflicts."))
        for c in rows:
            click.echo(_("{human}  task {v}  {field}: {value!r} (by {by}) lost to {value2!r} (by "
                  "{by2}): {rule}").format(human=timefmt.human(c['at_ms']), v=c['task'][:6], field=c['field'], value=c['loser']['value'], by=c['loser']['by'], value2=c['winner']['value'], by2=c['winner']['by'], rule=c['rule']))

    emit(ctx, rows, text)


@cli.command()
@data_option
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@click.pass_context
def backup(ctx: click.Context, data: Path, dest: Path) -> None:
    """Write the whole relay (database and document chunks) to one file DEST while it runs.

    SQLite or PostgreSQL alike; 'hbw-relay restore' loads it into either. Keep relay.key apart.
    """
    r = admin.backup(data, dest)
    emit(ctx, r, _("Backed up {human_bytes} to {dest}. Also keep a copy of {data}/relay.key somewhere safe.").format(human_bytes=timefmt.human_bytes(r['bytes']), dest=dest, data=data))


@cli.command()
@click.argument("backup_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="New, empty data directory to restore into.")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="The relay.key file saved with the backup.")
@click.option("--database", metavar="URL", help="Restore into this empty PostgreSQL database (postgresql://...) "
              "instead of SQLite in the data directory.")
@json_option
@click.pass_context
def restore(ctx: click.Context, backup_file: Path, data: Path, key_file: Path, database: str | None) -> None:
    """Rebuild a relay data directory from a backup file and its relay key (into SQLite, or PostgreSQL)."""
    r = admin.restore(backup_file, data, key_file, database)
    emit(ctx, r, _("Restored into {data}. Start it with 'hbw-relay serve --data {data}'.").format(data=data))


@cli.group(cls=RelayGroup)
def bundle() -> None:
    """Sync by file: bundles that officials send by email or bring on a USB stick."""


@bundle.command("ingest")
@data_option
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reply-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the reply bundle (default: next to FILE).")
@json_option
@click.pass_context
def bundle_ingest(ctx: click.Context, data: Path, files: tuple[Path, ...], reply_dir: Path | None) -> None:
    """Apply a device's bundle exactly as an online sync would, and write its sealed reply.

    Send the reply file back the way the bundle came (email, USB stick). Only
    that device can open it. An older bundle than one already ingested is
    refused; the same bundle again gets its reply again (for one lost in the mail).

    Several files at once (FILE...): the parts of one export (name-1of3.hbw, ...) or
    bundles of several officials, in any order; each is ingested and answered on its
    own, and a file that fails stops the run (those before it are kept: ingesting
    them again only writes their replies again). With --json, one line per file.
    """
    for file in files:
        _ingest_one(ctx, data, file, reply_dir)


def _ingest_one(ctx: click.Context, data: Path, file: Path, reply_dir: Path | None) -> None:
    r = admin.ingest_bundle(data, file, reply_dir)
    text = ngettext("Bundle {counter} from {member}: {inn} batch accepted, {out} to send back.",
                    "Bundle {counter} from {member}: {inn} batches accepted, {out} to send back.", r["batches_in"]).format(
        counter=r["counter"], member=r["member"], inn=r["batches_in"], out=r["batches_out"])
    if r["chunks_in"]:
        text += "\n" + ngettext("{n} document chunk received with it.", "{n} document chunks received with it.",
                                 r["chunks_in"]).format(n=r["chunks_in"])
    if len(r["replies"]) == 1:
        text += "\n" + _("Reply: {file} ({size}).").format(file=r["reply"], size=timefmt.human_bytes(r["reply_bytes"]))
    else:  # each file fits the device's --max-size (an email attachment): send them all, any order
        text += "\n" + _("The reply is {n} files ({size} in all), each small enough for one email; send them all, "
                         "in any order:").format(n=len(r["replies"]), size=timefmt.human_bytes(r["reply_bytes"]))
        text += "".join(f"\n  {x['file']} ({timefmt.human_bytes(x['bytes'])})" for x in r["replies"])
    if r["more_waiting"]:
        text += "\n" + _("More is waiting for this device than one reply holds: its next bundle gets the rest.")
    if r["over_cap"]:
        text += "\n" + _("The first file is larger than the device asked for (it holds a summary of the team's "
                         "history that cannot be split): send it another way if the mail refuses it (a USB stick).")
    emit(ctx, r, text)


cli_equipment.register(cli, RelayGroup, data_option)
cli_storage.register(cli, data_option)
cli_teams.register(cli, RelayGroup, dir_option)


def main() -> None:
    cli(prog_name="hbw-relay")


if __name__ == "__main__":
    main()
