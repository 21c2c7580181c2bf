"""Shared causes (bot/verdict/groups.py): which failures of a sweep are one fix."""

from __future__ import annotations

import random

from bot.model import Group
from bot.model.records import TriageDetail, TriageFailure, TriageRow, TriageVerdict
from bot.verdict.groups import group_failures, normalise

_ids = iter(range(1, 10_000))


def row(
    recipe: str,
    *,
    outcome: str = "genuine",
    cause: str = "harness",
    rule: str = "",
    evidence: tuple[str, ...] = (),
    message: str = "",
    judged: bool = True,
) -> TriageRow:
    verdict = (
        TriageVerdict(outcome=outcome, cause=cause, rule=rule, evidence=evidence)
        if judged
        else None
    )
    failure = TriageFailure(run_id=f"ref-{recipe}", messages=(message,) if message else ())
    return TriageRow(
        id=next(_ids),
        recipe=recipe,
        command_id=None,
        repo="coop/recipes",
        number=1,
        fix_repo=None,
        fix_number=None,
        created_at=0.0,
        updated_at=0.0,
        detail=TriageDetail(failure=failure, verdict=verdict),
        sweep_id=1,
    )


WARM = "signature:warm-domain-collision"


def test_the_same_signature_rule_is_one_group_whatever_else_differs() -> None:
    rows = [
        row("keycloak", rule=WARM, message="timeout waiting for kc-1.ci.example"),
        row("bluesky-pds", rule=WARM, message="502 from pds-9.ci.example"),
        row("mumble", outcome="flake", cause="load", rule="load-only", message="1 != 2"),
    ]
    assert group_failures(rows) == (
        Group(
            number=1,
            key=WARM,
            label="signature `warm-domain-collision`",
            cause="harness",
            members=("bluesky-pds", "keycloak"),
        ),
    )


def test_the_same_harness_exception_and_frame_across_domains_is_one_group() -> None:
    def trace(domain: str) -> tuple[str, ...]:
        return (
            'r1 stage-custom.log:40 File "/runner/deploy.py", line 88, in wait_ready',
            f"r1 stage-custom.log:41 DeployError: {domain} never became ready",
        )

    rows = [
        row("gitea", rule="harness-error", evidence=trace("gitea-1.ci.example")),
        row("nextcloud", rule="harness-error", evidence=trace("nc-4.ci.example")),
    ]
    (group,) = group_failures(rows)
    assert group.members == ("gitea", "nextcloud")
    assert group.key.startswith("exception:DeployError@/runner/deploy.py wait_ready")
    assert group.label == "harness exception `DeployError` in `/runner/deploy.py wait_ready`"

    # Positive control: the same exception raised from another frame is another cause.
    other = (
        'r1 stage-custom.log:40 File "/runner/backup.py", line 12, in snapshot',
        "r1 stage-custom.log:41 DeployError: nc-4.ci.example never became ready",
    )
    split = [rows[0], row("nextcloud", rule="harness-error", evidence=other)]
    assert all(not g.key.startswith("exception:") for g in group_failures(split))


def test_the_same_normalised_assertion_is_one_group() -> None:
    rows = [
        row(
            "wordpress",
            cause="recipe",
            rule="stage-failed",
            message="expected 200 from https://wp-3f9a2c1.ci.example/login after 30s, got 502",
        ),
        row(
            "ghost",
            cause="recipe",
            rule="stage-failed",
            message="expected 200 from https://ghost-77e01bd.ci.example/login after 45s, got 502",
        ),
    ]
    (group,) = group_failures(rows)
    assert group.members == ("ghost", "wordpress")
    assert group.cause == "recipe"
    assert group.key == "message:expected <n> from https://<domain>/login after <n>s, got <n>"

    # Positive control: different words are a different assertion (numbers never are).
    forbidden = "expected 200 from https://ghost-77e01bd.ci.example/login, connection refused"
    differs = [rows[0], row("ghost", cause="recipe", rule="stage-failed", message=forbidden)]
    assert group_failures(differs) == ()


def test_normalise_makes_ids_hashes_uuids_paths_and_the_recipe_alike() -> None:
    assert normalise("run 123 of 7", "x") == "run <n> of <n>"
    assert normalise("sha deadbeef12 differs") == "sha <hex> differs"
    assert normalise("id 0b0e5f8e-3c1a-4bd7-9c57-2f3f7b6a1c00 gone") == "id <uuid> gone"
    assert normalise("open '/srv/a/b.txt' failed") == "open <path> failed"
    assert normalise("keycloak  not\tready", "keycloak") == "<recipe> not ready"
    # A recipe name inside another word is not the recipe.
    assert normalise("keycloakx down", "keycloak") == "keycloakx down"
    # A domain is one domain, even when it starts with the recipe's name.
    assert (
        normalise("no answer from matrix2-ab12.ci.example", "matrix2") == "no answer from <domain>"
    )
    assert normalise("matrix2 failed 3 times", "matrix2") == "<recipe> failed <n> times"


def test_one_recipe_alone_is_no_group_and_unjudged_rows_join_none() -> None:
    assert group_failures([row("keycloak", rule=WARM)]) == ()
    rows = [row("keycloak", rule=WARM), row("bluesky-pds", rule=WARM, judged=False)]
    assert group_failures(rows) == ()
    # Positive control: once judged, the second joins.
    judged = [rows[0], row("bluesky-pds", rule=WARM)]
    assert [g.members for g in group_failures(judged)] == [("bluesky-pds", "keycloak")]


def test_a_failure_is_in_one_group_the_strongest_kind_first() -> None:
    shared = "connection refused by db-1.ci.example"
    rows = [
        row("a", rule=WARM, message=shared),
        row("b", rule=WARM, message="other text"),
        row("c", rule="stage-failed", message=shared.replace("db-1", "db-2")),
    ]
    groups = group_failures(rows)
    # a and b share the signature; c's message matches a's, but a is taken: c is alone.
    assert [g.members for g in groups] == [("a", "b")]


def test_mixed_causes_say_so_and_numbering_is_stable_whatever_the_order() -> None:
    rows = [
        row("keycloak", rule=WARM, cause="harness"),
        row("bluesky-pds", rule=WARM, cause="load"),
        row("x1", rule="stage-failed", message="disk full on 10.0.0.1"),
        row("x2", rule="stage-failed", message="disk full on 10.0.0.9"),
    ]
    expected = group_failures(rows)
    assert [(g.number, g.members, g.cause) for g in expected] == [
        (1, ("bluesky-pds", "keycloak"), "mixed"),
        (2, ("x1", "x2"), "harness"),
    ]
    shuffled = list(rows)
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        assert group_failures(shuffled) == expected
