"""``deepseek-rag ab-report``: the online A/B report of a running service (``GET /v1/experiments``)."""

from __future__ import annotations

import json

import click


@click.command("ab-report")
@click.option("--url", required=True, envvar="DEEPSEEK_RAG_URL", help="The service, e.g. http://127.0.0.1:8000.")
@click.option("--key", envvar="DEEPSEEK_RAG_READ_KEY", default=None, help="Read key, if the service needs one.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def ab_report_command(url, key, as_json) -> None:
    """Per arm: requests, feedback rate, helpful share, latency; each arm against the default (95% CI, p-value).

    \b
    Example:
      deepseek-rag ab-report --url http://127.0.0.1:8000
    """
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.get(url.rstrip("/") + "/v1/experiments", headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from None
    if response.status_code != 200:
        raise click.ClickException(f"{url} answered {response.status_code}: {response.text[:300]}")
    report = response.json()
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"default arm: {report['default']}; {report['test']}")
    click.echo(f"{'arm':<14}{'weight':>7}{'requests':>10}{'feedback':>9}{'helpful':>9}{'p50 ms':>8}{'p99 ms':>8}"
               f"  vs default: difference [95% CI], p")
    for name, row in report["arms"].items():
        share = "-" if row["helpful_share"] is None else f"{row['helpful_share']:.1%}"
        versus = row.get("vs_default")
        compared = "" if not versus or versus.get("difference") is None else (
            f"  {versus['difference']:+.3f} [{versus['ci95'][0]:+.3f}, {versus['ci95'][1]:+.3f}], p={versus['p_value']:.4f}")
        weight = "-" if row["weight"] is None else f"{row['weight']:g}"
        p50 = "-" if row["p50_ms"] is None else f"{row['p50_ms']:.1f}"
        p99 = "-" if row["p99_ms"] is None else f"{row['p99_ms']:.1f}"
        click.echo(f"{name:<14}{weight:>7}{row['requests']:>10}{row['feedback_rate']:>9.1%}{share:>9}{p50:>8}{p99:>8}{compared}")
    click.echo(f"rated requests per arm needed to detect a {report['min_effect']:.0%} difference "
               f"(alpha 0.05, power 0.8): {report['rated_per_arm_needed']:,}")
