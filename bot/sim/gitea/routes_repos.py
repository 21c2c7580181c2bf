"""The fake Gitea's other endpoints: the caller, org membership and repos, commit statuses,
pull requests and their files, and collaborator permissions."""

from __future__ import annotations

from bot.sim.gitea.handling import Answer, Ctx, Handling
from bot.sim.gitea.records import SimStatus, now
from bot.sim.gitea.spec import API_PREFIX

_STATUS_STATES = ("pending", "success", "error", "failure", "warning", "skipped")


class RepoRoutes(Handling):
    """GET /user, org members and repos, statuses, PRs, PR files and permissions."""

    def _get_user(self, ctx: Ctx) -> Answer:
        return Answer(200, self._user_json(ctx.caller, as_self=True))

    def _org_is_member(self, ctx: Ctx) -> Answer:
        members = self._members.get(ctx.params["org"])
        if members is None:
            return self._not_found()
        caller = self._users[ctx.caller]
        if ctx.caller not in members and not caller.is_admin:
            # non-members only get to ask about public membership
            org, user = ctx.params["org"], ctx.params["username"]
            loc = f"{self.root_url}{API_PREFIX}/orgs/{org}/public_members/{user}"
            return Answer(303, headers={"Location": loc})
        if ctx.params["username"] in members:
            return Answer(204)
        return self._not_found()

    def _org_is_public_member(self, ctx: Ctx) -> Answer:
        members = self._members.get(ctx.params["org"])
        if members is not None and members.get(ctx.params["username"]):
            return Answer(204)
        return self._not_found()

    def _list_statuses(self, ctx: Ctx) -> Answer:
        repo = self._repo_for(ctx)
        sha = ctx.params["sha"]
        found = self.statuses(repo.full_name, sha)
        state = ctx.query.get("state")
        if state:
            found = [s for s in found if s.state == state]
        if ctx.query.get("sort") not in ("oldest", "leastupdate", "leastindex"):
            found.reverse()  # newest first unless asked otherwise
        page, headers = self._page(ctx, len(found))
        return Answer(200, [self._status_json(repo, sha, s) for s in found[page]], headers)

    def _create_status(self, ctx: Ctx) -> Answer:
        repo = self._repo_for(ctx)
        if self._perm(repo, ctx.caller) in ("none", "read"):
            return self._error(403, "user should have write permission on this repository")
        state = self._body_str(ctx, "state", required=True)
        if state not in _STATUS_STATES:
            return self._error(400, f"invalid state {state!r}")
        sha = ctx.params["sha"]
        existing = self._statuses.setdefault((repo.full_name, sha), [])
        status = SimStatus(
            id=len(existing) + 1,
            state=state,
            context=self._body_str(ctx, "context", required=False),
            description=self._body_str(ctx, "description", required=False),
            target_url=self._body_str(ctx, "target_url", required=False),
            creator=ctx.caller,
            created_at=now(),
        )
        existing.append(status)
        self._wrote(
            "status", repo.full_name, ctx.caller, sha=sha, value=state, note=status.description
        )
        return Answer(201, self._status_json(repo, sha, status))

    def _get_pull(self, ctx: Ctx) -> Answer:
        repo = self._repo_for(ctx)
        issue = self._issue_for(ctx, repo)
        if issue.pull is None:
            return self._not_found()
        return Answer(200, self._pull_json(issue, issue.pull, ctx.caller))

    def _list_pulls(self, ctx: Ctx) -> Answer:
        repo = self._repo_for(ctx)
        state = ctx.query.get("state", "open") or "open"
        pulls = [
            i
            for (name, _), i in sorted(self._issues.items())
            if name == repo.full_name and i.pull is not None and state in ("all", i.state)
        ]
        page, headers = self._page(ctx, len(pulls))
        body = [self._pull_json(i, i.pull, ctx.caller) for i in pulls[page] if i.pull]
        return Answer(200, body, headers)

    def _org_repos(self, ctx: Ctx) -> Answer:
        org = ctx.params["org"]
        user = self._users.get(org)
        if user is None or not user.is_org:
            return self._not_found()
        repos = [
            r
            for name, r in sorted(self._repos.items())
            if r.owner == org and self._perm(r, ctx.caller) != "none"
        ]
        page, headers = self._page(ctx, len(repos))
        return Answer(200, [self._repo_json(r, ctx.caller) for r in repos[page]], headers)

    def _pull_files(self, ctx: Ctx) -> Answer:
        repo = self._repo_for(ctx)
        issue = self._issue_for(ctx, repo)
        if issue.pull is None:
            return self._not_found()
        files = issue.pull.files
        page, headers = self._page(ctx, len(files))
        # these endpoints add GitHub-style paging headers on top of the usual ones
        current = int(headers["X-Page"])
        count = int(headers["X-PageCount"])
        headers["X-HasMore"] = "true" if current < count else "false"
        body = [self._file_json(repo, issue.pull.head_sha, f) for f in files[page]]
        return Answer(200, body, headers)

    def _permission(self, ctx: Ctx) -> Answer:
        repo = self._repo_for(ctx)
        target = ctx.params["collaborator"]
        if target not in self._users or self._users[target].is_org:
            return self._not_found()
        if target != ctx.caller and self._perm(repo, ctx.caller) not in ("admin", "owner"):
            return self._error(
                403,
                "only admins can query all permissions, repo admins can query all repo "
                "permissions, collaborators can query only their own",
            )
        perm = self._perm(repo, target)
        return Answer(200, {"permission": perm, "role_name": perm, "user": self._user_json(target)})
