"""The fake Gitea's users and repositories as JSON, shaped as Gitea 1.26.3 serialises them.

Every key the spec declares is present (bar Gitea's omitempty ones), with Gitea's quirks:
placeholder e-mails for other users, Go's zero time. The links in every body start at
`root_url`, which the server supplies. Issues and what hangs off them: shapes_issues.py.
"""

from __future__ import annotations

from typing import Any

from bot.sim.gitea.records import Repo
from bot.sim.gitea.spec import API_PREFIX
from bot.sim.gitea.world import World

Json = dict[str, Any]

_ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as Gitea serialises it


def _repo_settings() -> Json:
    """A repository's settings and features: the fake's are Gitea's defaults, never changed."""
    return {
        "has_code": True,
        "has_issues": True,
        "internal_tracker": {
            "enable_time_tracker": True,
            "allow_only_contributors_to_track_time": True,
            "enable_issue_dependencies": True,
        },
        "has_wiki": True,
        "has_pull_requests": True,
        "has_projects": True,
        "projects_mode": "all",
        "has_releases": True,
        "has_packages": True,
        "has_actions": False,
        "ignore_whitespace_conflicts": False,
        "allow_merge_commits": True,
        "allow_rebase": True,
        "allow_rebase_explicit": True,
        "allow_squash_merge": True,
        "allow_fast_forward_only_merge": True,
        "allow_rebase_update": True,
        "allow_manual_merge": False,
        "autodetect_manual_merge": False,
        "default_delete_branch_after_merge": False,
        "default_merge_style": "merge",
        "default_allow_maintainer_edit": False,
        "avatar_url": "",
        "internal": False,
        "mirror_interval": "",
        "object_format_name": "sha1",
        "mirror_updated": _ZERO_TIME,
        "topics": [],
        "licenses": [],
    }


class Shapes(World):
    """The JSON views of users, repos and branches, as a given viewer sees them."""

    @property
    def root_url(self) -> str:
        """Gitea's ROOT_URL, the base of every link in a body: the server supplies it."""
        raise NotImplementedError

    @property
    def _host(self) -> str:
        return self.root_url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]

    def _html(self, path: str) -> str:
        return f"{self.root_url}/{path}"

    def _api(self, path: str) -> str:
        return f"{self.root_url}{API_PREFIX}/{path}"

    def _user_json(self, login: str, *, as_self: bool = False) -> Json:
        user = self._users[login]
        host = self._host
        return {
            "id": user.id,
            "login": login,
            "login_name": "",
            "source_id": 0,
            "full_name": "",
            # without a viewer Gitea shows a placeholder address and hides activity
            "email": f"{login}@{host}" if as_self else f"{user.id}+{login}@noreply.{host}",
            "avatar_url": self._html(f"avatars/{user.id}"),
            "html_url": self._html(login),
            "language": "",
            "is_admin": user.is_admin and as_self,
            "last_login": user.created if as_self else _ZERO_TIME,
            "created": user.created,
            "restricted": False,
            "active": as_self,
            "prohibit_login": False,
            "location": "",
            "website": "",
            "description": "",
            "visibility": "public",
            "followers_count": 0,
            "following_count": 0,
            "starred_repos_count": 0,
            "username": login,
        }

    def _repo_json(self, repo: Repo, viewer: str, *, with_parent: bool = True) -> Json:
        full = repo.full_name
        out: Json = {
            "id": repo.id,
            "owner": self._user_json(repo.owner),
            "name": repo.name,
            "full_name": full,
            "description": "",
            "empty": False,
            "private": repo.private,
            "fork": repo.fork_of is not None,
            "template": False,
        }
        if repo.fork_of is not None and with_parent:
            out["parent"] = self._repo_json(self._repos[repo.fork_of], viewer, with_parent=False)
        out |= self._repo_links(full)
        out |= self._repo_counts(full)
        out |= {
            "default_branch": repo.default_branch,
            "archived": False,
            "created_at": repo.created,
            "updated_at": repo.created,
            "archived_at": "1970-01-01T00:00:00Z",
            "permissions": self._repo_permissions(repo, viewer),
        }
        return out | _repo_settings()

    def _repo_links(self, full: str) -> Json:
        return {
            "mirror": False,
            "size": 0,
            "language": "",
            "languages_url": self._api(f"repos/{full}/languages"),
            "html_url": self._html(full),
            "url": self._api(f"repos/{full}"),
            "link": "",
            "ssh_url": f"git@{self._host}:{full}.git",
            "clone_url": self._html(f"{full}.git"),
            "original_url": "",
            "website": "",
        }

    def _repo_counts(self, full: str) -> Json:
        return {
            "stars_count": 0,
            "forks_count": sum(1 for r in self._repos.values() if r.fork_of == full),
            "watchers_count": 0,
            "branch_count": 1,
            "open_issues_count": sum(
                1
                for i in self._issues.values()
                if i.repo == full and i.pull is None and i.state == "open"
            ),
            "open_pr_counter": sum(
                1
                for i in self._issues.values()
                if i.repo == full and i.pull is not None and i.state == "open"
            ),
            "release_counter": 0,
        }

    def _repo_permissions(self, repo: Repo, viewer: str) -> Json:
        perm = self._perm(repo, viewer)
        return {
            "admin": perm in ("admin", "owner"),
            "push": perm in ("write", "admin", "owner"),
            "pull": perm != "none",
        }

    def _branch_json(self, ref: str, sha: str, repo: Repo, viewer: str) -> Json:
        return {
            "label": ref,
            "ref": ref,
            "sha": sha,
            "repo_id": repo.id,
            "repo": self._repo_json(repo, viewer),
        }
