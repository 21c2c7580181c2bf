"""The fake Gitea's issue endpoints: issues, their comments, and reactions to comments."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bot.sim.gitea.handling import Answer, Ctx, Handling
from bot.sim.gitea.records import SimReaction, now

# Gitea's default [ui] REACTIONS
_ALLOWED_REACTIONS = frozenset(
    {"+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes"}
)


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # a time without an offset cannot be compared with Gitea's; the spec check reports it
    return parsed if parsed.tzinfo is not None else None


class IssueRoutes(Handling):
    """List, open and GET issues; list, create, get and edit comments; list, add and remove
    reactions."""

    def _list_issues(self, ctx: Ctx) -> Answer:
        """A repository's issues (and PRs, unless type=issues), newest first, paged; filters
        state (open|closed|all) and created_by, as Gitea's."""
        repo = self._repo_for(ctx)
        state = ctx.query.get("state", "open") or "open"
        kind = ctx.query.get("type", "")
        creator = ctx.query.get("created_by", "")
        found = [
            i
            for (name, _), i in sorted(self._issues.items(), key=lambda kv: -kv[1].number)
            if name == repo.full_name
            and state in ("all", i.state)
            and (kind != "issues" or i.pull is None)
            and (kind != "pulls" or i.pull is not None)
            and (not creator or i.user == creator)
        ]
        page, headers = self._page(ctx, len(found))
        return Answer(200, [self._issue_json(i) for i in found[page]], headers)

    def _create_issue(self, ctx: Ctx) -> Answer:
        repo = self._repo_for(ctx)
        if self._perm(repo, ctx.caller) == "none":
            return self._not_found()
        title = self._body_str(ctx, "title", required=True)
        body = self._body_str(ctx, "body", required=False)
        number = 1 + max((n for (name, n) in self._issues if name == repo.full_name), default=0)
        issue = self._new_issue(repo.full_name, number, title, ctx.caller, "open")
        issue.body = body
        self._wrote("issue", repo.full_name, ctx.caller, value=title, note=str(number))
        return Answer(201, self._issue_json(issue))

    def _get_issue(self, ctx: Ctx) -> Answer:
        repo = self._repo_for(ctx)
        return Answer(200, self._issue_json(self._issue_for(ctx, repo)))

    def _list_comments(self, ctx: Ctx) -> Answer:
        repo = self._repo_for(ctx)
        issue = self._issue_for(ctx, repo)
        since = _parse_time(ctx.query.get("since", ""))
        before = _parse_time(ctx.query.get("before", ""))
        out = []
        for c in self.comments(repo.full_name, issue.number):
            updated = datetime.fromisoformat(c.updated_at)
            if (since is None or updated >= since) and (before is None or updated < before):
                out.append(self._comment_json(c))
        return Answer(200, out, {"X-Total-Count": str(len(out))})

    def _create_comment(self, ctx: Ctx) -> Answer:
        repo = self._repo_for(ctx)
        issue = self._issue_for(ctx, repo)
        body = self._body_str(ctx, "body", required=True)
        cid = self._store_comment(repo.full_name, issue.number, body, ctx.caller)
        issue.updated = now()
        self._wrote("comment", repo.full_name, ctx.caller, comment_id=cid, value=body)
        return Answer(201, self._comment_json(self._comments[cid]))

    def _get_comment(self, ctx: Ctx) -> Answer:
        repo = self._repo_for(ctx)
        return Answer(200, self._comment_json(self._comment_for(ctx, repo)))

    def _edit_comment(self, ctx: Ctx) -> Answer:
        repo = self._repo_for(ctx)
        comment = self._comment_for(ctx, repo)
        if comment.user != ctx.caller and self._perm(repo, ctx.caller) in ("none", "read"):
            # Gitea answers this one with an empty body
            return Answer(403, raw=b"")
        body = self._body_str(ctx, "body", required=True)
        edited = replace(comment, body=body, updated_at=now())
        self._comments[comment.id] = edited
        self._wrote("edit", repo.full_name, ctx.caller, comment_id=comment.id, value=body)
        return Answer(200, self._comment_json(edited))

    def _list_reactions(self, ctx: Ctx) -> Answer:
        repo = self._repo_for(ctx)
        comment = self._comment_for(ctx, repo)
        return Answer(200, [self._reaction_json(r) for r in self.reactions(comment.id)])

    def _post_reaction(self, ctx: Ctx) -> Answer:
        repo = self._repo_for(ctx)
        comment = self._comment_for(ctx, repo)
        content = self._body_str(ctx, "content", required=False)
        if content not in _ALLOWED_REACTIONS:
            return self._error(403, f"'{content}' is not an allowed reaction")
        existing = self._reactions.setdefault(comment.id, [])
        for r in existing:
            if (r.user, r.content) == (ctx.caller, content):
                return Answer(200, self._reaction_json(r))
        reaction = SimReaction(ctx.caller, content, now())
        existing.append(reaction)
        self._wrote("reaction", repo.full_name, ctx.caller, comment_id=comment.id, value=content)
        return Answer(201, self._reaction_json(reaction))

    def _delete_reaction(self, ctx: Ctx) -> Answer:
        repo = self._repo_for(ctx)
        comment = self._comment_for(ctx, repo)
        content = self._body_str(ctx, "content", required=False)
        existing = self._reactions.get(comment.id, [])
        kept = [r for r in existing if (r.user, r.content) != (ctx.caller, content)]
        self._reactions[comment.id] = kept
        if len(kept) < len(existing):
            self._wrote(
                "unreaction", repo.full_name, ctx.caller, comment_id=comment.id, value=content
            )
        return Answer(204)
