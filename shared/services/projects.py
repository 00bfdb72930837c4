"""Projects and tags: owner-scoped resources with role-aware reads."""

from __future__ import annotations

from shared.errors import InvalidInput, NotFound
from shared.models import Principal, Project, Tag
from shared.ports import CursorPage, ProjectRepository, TagRepository


def _name(value: str, field: str, max_len: int) -> str:
    value = value.strip()
    if not value:
        raise InvalidInput(f"{field} must not be empty", field=field)
    if len(value) > max_len:
        raise InvalidInput(f"{field} must be at most {max_len} characters", field=field)
    return value


class ProjectService:
    def __init__(self, projects: ProjectRepository) -> None:
        self.projects = projects

    def create(self, actor: Principal, name: str, description: str | None) -> Project:
        return self.projects.create(
            owner_id=actor.user_id, name=_name(name, "name", 200), description=description
        )

    def get(self, actor: Principal, project_id: int, *, field: str | None = None) -> Project:
        """The project, if ``actor`` may read it; otherwise NotFound (naming ``field``, the
        request field it came from, when another resource refers to it)."""
        project = self.projects.get(project_id)
        if project is None or not actor.can_read(project.owner_id):
            raise NotFound("Project not found", code="PROJECT_NOT_FOUND", field=field)
        return project

    def list(
        self,
        actor: Principal,
        *,
        skip: int,
        limit: int,
        everyone: bool = False,
        cursor: str | None = None,
    ) -> CursorPage[Project]:
        owner = None if everyone and actor.at_least("admin") else actor.user_id
        return self.projects.list(owner_id=owner, skip=skip, limit=limit, cursor=cursor)


class TagService:
    def __init__(self, tags: TagRepository) -> None:
        self.tags = tags

    def create(self, actor: Principal, name: str) -> Tag:
        return self.tags.create(owner_id=actor.user_id, name=_name(name, "name", 100))

    def get(self, actor: Principal, tag_id: int) -> Tag:
        tag = self.tags.get(tag_id)
        if tag is None or not actor.can_read(tag.owner_id):
            raise NotFound("Tag not found", code="TAG_NOT_FOUND")
        return tag

    def list(
        self, actor: Principal, *, skip: int, limit: int, cursor: str | None = None
    ) -> CursorPage[Tag]:
        return self.tags.list(owner_id=actor.user_id, skip=skip, limit=limit, cursor=cursor)

    def delete(self, actor: Principal, tag_id: int) -> None:
        self.tags.delete(self.get(actor, tag_id))
