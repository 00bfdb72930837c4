"""Projects and tags: owner-scoped, with tag names unique per owner (a name lock)."""

from __future__ import annotations

from shared.adapters.dynamodb.table import OwnedRepository
from shared.errors import Conflict
from shared.models import Project, Tag
from shared.ports import CursorPage

# Built once: pydantic rebuilds a generic model's class when no one keeps it.
_ProjectPage = CursorPage[Project]
_TagPage = CursorPage[Tag]


class DynamoProjects(OwnedRepository):
    entity = "project"

    def create(self, *, owner_id: int, name: str, description: str | None) -> Project:
        project = Project(
            id=self.t.next_id("project"), owner_id=owner_id, name=name, description=description
        )
        self._create(project.id, owner_id, project.model_dump(mode="json"))
        return project

    def get(self, project_id: int) -> Project | None:
        item = self._get(project_id)
        return Project.model_validate(item) if item else None

    def list(
        self, *, owner_id: int | None, skip: int, limit: int, cursor: str | None = None
    ) -> CursorPage[Project]:
        total, rows, nxt = self._page(owner_id, skip, limit, cursor)
        items = [Project.model_validate(r) for r in rows]
        return _ProjectPage(total=total, items=items, next_cursor=nxt)


class DynamoTags(OwnedRepository):
    """Tags, each beside a ``TAGNAME#<uid>#<lower name>`` lock created and deleted with it."""

    entity = "tag"

    @staticmethod
    def _name_lock(owner_id: int, name: str) -> tuple[str, str]:
        return f"TAGNAME#{owner_id}#{name.lower()}", "TAGNAME"

    def create(self, *, owner_id: int, name: str) -> Tag:
        lock_pk, lock_sk = self._name_lock(owner_id, name)
        if self.t.get(lock_pk, lock_sk):
            raise Conflict(f"Tag '{name}' already exists", field="name", code="TAG_EXISTS")
        tag = Tag(id=self.t.next_id("tag"), owner_id=owner_id, name=name)
        lock = {"PK": lock_pk, "SK": lock_sk, "type": "tagname", "tag_id": tag.id}
        ops = self._create_ops(tag.id, owner_id, tag.model_dump(mode="json"))
        if not self.t.transact([*ops, self.t.put_op(lock)]):
            raise Conflict(f"Tag '{name}' already exists", field="name", code="TAG_EXISTS")
        return tag

    def get(self, tag_id: int) -> Tag | None:
        item = self._get(tag_id)
        return Tag.model_validate(item) if item else None

    def list(
        self, *, owner_id: int | None, skip: int, limit: int, cursor: str | None = None
    ) -> CursorPage[Tag]:
        total, rows, nxt = self._page(owner_id, skip, limit, cursor)
        items = [Tag.model_validate(r) for r in rows]
        return _TagPage(total=total, items=items, next_cursor=nxt)

    def delete(self, tag: Tag) -> None:
        self._delete(tag.id, self._name_lock(tag.owner_id, tag.name))
