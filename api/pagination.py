"""Pagination of list endpoints: ``limit`` and ``offset`` in, ``X-Total-Count`` and a ``Link: rel=next`` out.

List bodies stay plain JSON arrays (the pages and clients read them as they were).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Query, Request, Response

T = TypeVar("T")


@dataclass
class Paging:
    limit: int
    offset: int
    request: Request
    response: Response

    @property
    def want(self) -> int:
        """Rows to fetch from a store that cannot skip: the page, what it skips, and one to see if more follow."""
        return self.offset + self.limit + 1

    def page(self, rows: list[T], total: int | None = None) -> list[T]:
        """This page of ``rows`` (which start at offset 0); sets the headers."""
        self.headers(total, more=len(rows) > self.offset + self.limit)
        return rows[self.offset:self.offset + self.limit]

    def json_array(self, items: Iterable[bytes]) -> Response:
        """A JSON array of items already serialised (``api.schemas.case_out_json``), with this page's headers."""
        headers = {k: v for k, v in self.response.headers.items() if k.lower() in ("link", "x-total-count")}
        return Response(b"[" + b",".join(items) + b"]", media_type="application/json", headers=headers)

    def headers(self, total: int | None, more: bool = False) -> None:
        """``X-Total-Count`` (when known) and ``Link: <...>; rel="next"`` when another page follows."""
        if total is not None:
            self.response.headers["X-Total-Count"] = str(total)
            more = self.offset + self.limit < total
        if more:
            nxt = self.request.url.include_query_params(offset=self.offset + self.limit, limit=self.limit)
            self.response.headers["Link"] = f'<{nxt.path}?{nxt.query}>; rel="next"'


def paging(default: int = 50, maximum: int = 500):
    """A dependency: ``limit`` (1..maximum, default ``default``) and ``offset`` (0..100000)."""
    async def dep(request: Request, response: Response,  # async: no thread hop for what does no I/O
            limit: Annotated[int, Query(ge=1, le=maximum, description="rows per page")] = default,
            offset: Annotated[int, Query(ge=0, le=100_000, description="rows to skip")] = 0) -> Paging:
        return Paging(limit, offset, request, response)
    return Depends(dep)
