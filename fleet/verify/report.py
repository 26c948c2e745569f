"""How a verify report looks: a compact table for people, one HTML page with a bar chart per host."""

from __future__ import annotations

import html

from fleet.verify.check import OK, Report


def render_table(report: Report) -> str:
    lines = [f"{report.verdict.upper()}: {report.message}"]
    if report.hosts:
        lines.append("")
        lines.append(f"{'host':<24} {'target':>8} {'running':>8} {'ratio':>7}  note")
        for host in report.hosts:
            ratio = f"{host.ratio:.1%}" if host.ratio is not None else "-"
            running = f"{host.running:,}" if host.running is not None else "-"
            note = host.error or (f"BYPASSED STARTUP SCRIPT: {host.bypassed_script}" if host.bypassed_script else "")
            if host.restarts:
                note = f"{note}; {host.restarts} restarts".lstrip("; ")
            if host.rollout:  # mid-rollout (or how the last one ended): not a shortfall of its own
                note = f"{note}; {host.rollout}".lstrip("; ")
            if host.recreating:  # a preempted Spot VM or a repair: its group brings it back on its state disk
                note = f"{note}; being recreated by its group ({host.recreating})".lstrip("; ")
            if host.retargeted:
                note = f"{note}; converging: stack target {host.planned_target_agents:,}".lstrip("; ")
            if (host.claims_rollout and not host.rolling) or (host.claims_retarget and not host.retargeted):
                note = f"{note}; not counted as converging: its metadata does not back that change".lstrip("; ")
            if host.pool:  # a pool VM: say which group and zone, so a shortfall names the VM to look at
                note = f"{note}; pool {host.pool} in {host.zone or '?'}".lstrip("; ")
            lines.append(f"{host.name:<24} {host.target_agents:>8,} {running:>8} {ratio:>7}  {note}".rstrip())
    if report.count is not None:
        lines.append(f"per host: {report.per_host}")
    lines += [f"SCRIPT: {problem}" for problem in report.script_problems]
    lines += [f"script audit: {unread}" for unread in report.script_unread]
    if report.registry_restored_from:
        lines.append(f"registry: its store was restored at the rendezvous' last start: {report.registry_restored_from}")
    return "\n".join(lines)


def render_watch_line(report: Report) -> str:
    return f"{report.checked_at} {report.verdict} {report.message}"


def render_html(report: Report) -> str:
    """One self-contained page: the verdict, and target vs running per host as horizontal bars (inline SVG)."""
    rows = [(h.name, h.target_agents, h.running) for h in report.hosts]
    if report.count:
        rows.append(("fleet (online at the rendezvous)", report.expectation.expected, report.count.online))
    scale = max([t for _, t, _ in rows] + [r or 0 for _, _, r in rows] + [1])
    bar_w, row_h = 520, 34
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{bar_w + 330}" height="{row_h * len(rows) + 10}" '
           'role="img" aria-label="target and running agents per host">']
    for i, (name, target, running) in enumerate(rows):
        y = i * row_h + 5
        tw = round(bar_w * target / scale)
        rw = round(bar_w * (running or 0) / scale)
        colour = "#2e7d32" if running is not None and running >= target * report.expectation.threshold else "#c62828"
        svg.append(f'<text x="0" y="{y + 16}" font-size="13">{html.escape(name)}</text>')
        svg.append(f'<rect x="230" y="{y}" width="{tw}" height="22" fill="#e0e0e0"><title>target {target:,}'
                   '</title></rect>')
        svg.append(f'<rect x="230" y="{y + 5}" width="{rw}" height="12" fill="{colour}"><title>running '
                   f'{running if running is not None else "unknown"}</title></rect>')
        label = f"{running:,} / {target:,}" if running is not None else f"? / {target:,}"
        svg.append(f'<text x="{240 + bar_w}" y="{y + 16}" font-size="13">{label}</text>')
    svg.append("</svg>")
    verdict_colour = "#2e7d32" if report.verdict == OK else "#c62828"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pilot-fleet verify: {report.verdict}</title>
<style>body{{font-family:sans-serif;margin:2em}}.verdict{{color:{verdict_colour};font-weight:bold}}</style></head>
<body>
<h1>pilot-fleet verify: <span class="verdict">{report.verdict}</span></h1>
<p>{html.escape(report.message)}</p>
<p>Checked {html.escape(report.checked_at)} against {html.escape(report.expectation.stats_url)}; per host:
{html.escape(report.per_host)}. Grey: target; bar: running (green at or above the threshold).</p>
{"".join(svg)}
</body></html>
"""
