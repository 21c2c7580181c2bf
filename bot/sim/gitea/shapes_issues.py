"""The fake Gitea's issues, PRs, comments, reactions, statuses and changed files as JSON,
shaped as Gitea 1.26.3 serialises them (HTML URLs where one might expect API ones included).
"""

from __future__ import annotations

from bot.sim.gitea.records import Issue, Pull, Repo, SimComment, SimFile, SimReaction, SimStatus
from bot.sim.gitea.shapes import Json, Shapes


class IssueShapes(Shapes):
    """The JSON views of issues and PRs and of what hangs off them."""

    def _issue_html(self, issue: Issue) -> str:
        kind = "pulls" if issue.pull is not None else "issues"
        return self._html(f"{issue.repo}/{kind}/{issue.number}")

    def _issue_comment_count(self, issue: Issue) -> int:
        return len(self.comments(issue.repo, issue.number))

    def _issue_json(self, issue: Issue) -> Json:
        repo = self._repos[issue.repo]
        closed = issue.updated if issue.state == "closed" else None
        return {
            "id": issue.id,
            "url": self._api(f"repos/{issue.repo}/issues/{issue.number}"),
            "html_url": self._issue_html(issue),
            "number": issue.number,
            "user": self._user_json(issue.user),
            "original_author": "",
            "original_author_id": 0,
            "title": issue.title,
            "body": issue.body,
            "ref": "",
            "assets": [],
            "labels": [],
            "milestone": None,
            "assignee": None,
            "assignees": None,
            "state": issue.state,
            "is_locked": False,
            "comments": self._issue_comment_count(issue),
            "created_at": issue.created,
            "updated_at": issue.updated,
            "closed_at": closed,
            "due_date": None,
            "time_estimate": 0,
            "pull_request": None
            if issue.pull is None
            else {
                "merged": False,
                "merged_at": None,
                "draft": False,
                "html_url": self._issue_html(issue),
            },
            "repository": {
                "id": repo.id,
                "name": repo.name,
                "owner": repo.owner,
                "full_name": repo.full_name,
            },
            "pin_order": 0,
            "content_version": 0,
        }

    def _pull_json(self, issue: Issue, pull: Pull, viewer: str) -> Json:
        html = self._issue_html(issue)
        adds = sum(f.additions for f in pull.files)
        dels = sum(f.deletions for f in pull.files)
        return {
            "id": pull.id,
            "url": html,  # Gitea puts the HTML URL here, not the API one
            "number": issue.number,
            "user": self._user_json(issue.user),
            "title": issue.title,
            "body": issue.body,
            "labels": [],
            "milestone": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_reviewers_teams": [],
            "state": issue.state,
            "draft": False,
            "is_locked": False,
            "comments": self._issue_comment_count(issue),
            "additions": adds,
            "deletions": dels,
            "changed_files": len(pull.files),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "mergeable": True,
            "merged": False,
            "merged_at": None,
            "merge_commit_sha": None,
            "merged_by": None,
            "allow_maintainer_edit": False,
            "base": self._branch_json(
                pull.base_ref, pull.base_sha, self._repos[issue.repo], viewer
            ),
            "head": self._branch_json(
                pull.head_ref, pull.head_sha, self._repos[pull.head_repo], viewer
            ),
            "merge_base": pull.base_sha,
            "due_date": None,
            "created_at": issue.created,
            "updated_at": issue.updated,
            "closed_at": issue.updated if issue.state == "closed" else None,
            "pin_order": 0,
            "content_version": 0,
        }

    def _comment_json(self, c: SimComment) -> Json:
        issue = self._issues[(c.repo, c.index)]
        html = self._issue_html(issue)
        is_pull = issue.pull is not None
        return {
            "id": c.id,
            "html_url": f"{html}#issuecomment-{c.id}",
            # exactly one of these is set, and both hold HTML URLs, as in Gitea
            "pull_request_url": html if is_pull else "",
            "issue_url": "" if is_pull else html,
            "user": self._user_json(c.user),
            "original_author": "",
            "original_author_id": 0,
            "body": c.body,
            "assets": [],
            "created_at": c.created_at,
            "updated_at": c.updated_at,
        }

    def _reaction_json(self, r: SimReaction) -> Json:
        return {"user": self._user_json(r.user), "content": r.content, "created_at": r.created_at}

    def _status_json(self, repo: Repo, sha: str, s: SimStatus) -> Json:
        return {
            "id": s.id,
            "status": s.state,  # "status" in responses, "state" in requests and webhooks
            "target_url": s.target_url,
            "description": s.description,
            "url": self._api(f"repos/{repo.full_name}/statuses/{sha}"),
            "context": s.context,
            "creator": self._user_json(s.creator),
            "created_at": s.created_at,
            "updated_at": s.created_at,
        }

    def _file_json(self, repo: Repo, sha: str, f: SimFile) -> Json:
        out: Json = {"filename": f.filename}
        if f.previous_filename:
            out["previous_filename"] = f.previous_filename
        return out | {
            "status": f.status,
            "additions": f.additions,
            "deletions": f.deletions,
            "changes": f.additions + f.deletions,
            "html_url": self._html(f"{repo.full_name}/src/commit/{sha}/{f.filename}"),
            "contents_url": self._api(f"repos/{repo.full_name}/contents/{f.filename}?ref={sha}"),
            "raw_url": self._html(f"{repo.full_name}/raw/commit/{sha}/{f.filename}"),
        }
