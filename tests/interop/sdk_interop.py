#!/usr/bin/env python3
"""Drive the vikingsync VikingDB emulator with the OFFICIAL Volcengine Python SDKs.

This proves the emulator speaks the real data-plane wire protocol: every request
below is built, signed (SignerV4) and parsed by unmodified PyPI packages:

* V2 API: ``vikingdb-python-sdk==0.1.35`` (``import vikingdb``)
* V1 API: ``volcengine==1.0.229`` (``volcengine.viking_db``)

Usage::

    python -m venv .venv && .venv/bin/pip install -r tests/interop/requirements.txt
    .venv/bin/python tests/interop/sdk_interop.py \\
        --endpoint http://127.0.0.1:PORT --ak AK --sk SK --region cn-beijing \\
        --v2-collection NAME --v1-collection NAME

Prints one ``PASS ...`` / ``FAIL ...`` line per check (``SKIP ...`` for checks
that could not run because an earlier step they depend on failed) and exits 0
only if every check passed (1 on any failure, 2 on bad usage).

Collections the emulator must have before this runs (one for V2, one for V1;
both have the same schema)::

    primary key: id
    fields:
      id     string        (primary key)
      title  string
      score  float32
      tags   list<string>
      vec    vector, dim 4

Endpoints exercised (nothing on the control plane):

* V2: ``GET /api/vikingdb/Ping`` (unsigned, called by the ``VikingDB``
  constructor, only HTTP 200 matters), ``POST /api/vikingdb/data/upsert``,
  ``/update``, ``/delete``, ``/fetch_in_collection`` (SignerV4, service
  ``vikingdb``).
* V1: ``GET /api/viking_db/data/ping`` (signed, called by the
  ``VikingDBService`` constructor; needs a JSON body in the 200 answer),
  ``POST /api/collection/upsert_data``, ``/update_data``, ``/del_data``,
  ``GET /api/collection/fetch_data`` with a JSON body (SignerV4, service
  ``air``). A ``Collection`` object is built directly, so
  ``/api/collection/info`` is never called.
* Optional (``--v1-collection-client``): ``volcengine.viking_db.CollectionClient``
  whose list fetch sends ``"replace_primay": true`` and needs every returned
  row to carry the primary key under ``"__primary_key"``.

What the checks expect from the emulator:

* V2 success: HTTP 200, ``code == "Success"`` (a JSON string; an int fails
  the SDK's pydantic model), ``request_id``/``message`` strings; fetch answers
  ``result.fetch = [{"id": pk, "fields": {...all fields incl. pk and vec...}}]``
  and ``result.ids_not_exist = [missing pks]``.
* V1 success: HTTP 200 with a JSON body ``{"code": 0, ...}``; ``fetch_data``
  answers ``data`` as a LIST of row maps (also for a single scalar key: the SDK
  reads ``data[0]``); a missing key may be left out or returned as a row
  holding only the primary key (plus an optional hint string).
* Wrong secret key: HTTP 401. V2 body ``{"code": "<string>", "message": ...}``;
  V1 body ``{"code": 1000001, "message": ..., "request_id": ...}``.
* The V1 upsert of several rows sends ``"ttl": null`` (the SDK groups rows by
  ``Data.TTL``, default ``None``); the emulator must treat it like 0.
* Strings with non-ASCII text: V1 sends ``\\uXXXX`` escapes (``json.dumps``),
  V2 sends raw UTF-8; both are signed over the exact bytes sent.

Row ids get a per-run suffix (``--run-id``, random by default) so the script can
be re-run against a long-lived emulator.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import traceback
import urllib.parse
import uuid
import warnings
from typing import Any, Callable, Dict, List, Optional

warnings.filterwarnings("ignore")  # pydantic "shadows an attribute" noise from the V2 SDK

SCHEMA_FIELDS = ("id", "title", "score", "tags", "vec")


# --------------------------------------------------------------------------- reporting


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def ok(self, name: str, detail: str = "") -> None:
        self.passed += 1
        print(f"PASS {name}" + (f" ({detail})" if detail else ""), flush=True)

    def fail(self, name: str, detail: str) -> None:
        self.failed += 1
        print(f"FAIL {name}: {one_line(detail)}", flush=True)

    def skip(self, name: str, why: str) -> None:
        self.skipped += 1
        print(f"SKIP {name}: {why}", flush=True)

    def run(self, name: str, fn: Callable[[], Optional[str]]) -> bool:
        """Run one check. fn returns an optional detail string or raises."""
        try:
            detail = fn()
        except CheckFailed as exc:
            self.fail(name, str(exc))
            return False
        except Exception as exc:  # the SDK's own exception, with its text
            self.fail(name, describe_exc(exc))
            if os.environ.get("INTEROP_TRACEBACK"):
                traceback.print_exc()
            return False
        self.ok(name, detail or "")
        return True


class CheckFailed(Exception):
    pass


def one_line(text: str) -> str:
    return " / ".join(part.strip() for part in str(text).splitlines() if part.strip())


def describe_exc(exc: BaseException) -> str:
    parts = [f"{type(exc).__module__}.{type(exc).__name__}: {exc}"]
    for attr in ("status_code", "code", "request_id"):
        if hasattr(exc, attr):
            parts.append(f"{attr}={getattr(exc, attr)!r}")
    return " | ".join(parts)


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


# --------------------------------------------------------------------------- data


def make_rows(run_id: str) -> List[Dict[str, Any]]:
    # Floats are mostly exact binary fractions so float32 storage round-trips exactly;
    # one 0.1 checks that float32 storage stays within tolerance.
    return [
        {"id": f"r1-{run_id}", "title": "alpha", "score": 0.5,
         "tags": ["a", "b"], "vec": [0.5, 0.25, -0.125, 1.0]},
        {"id": f"r2-{run_id}", "title": "北京 café", "score": 1.25,
         "tags": [], "vec": [0.1, -2.0, 3.5, 0.0]},
        {"id": f"r3-{run_id}", "title": "gamma", "score": -2.75,
         "tags": ["x"], "vec": [1.0, 1.0, 1.0, 1.0]},
    ]


UPDATED_TITLE = "beta updated ✓"


def expected_final(rows: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    r1, r2, _ = rows
    r2 = dict(r2, title=UPDATED_TITLE)
    return {r1["id"]: dict(r1), r2["id"]: r2}


def same_value(want: Any, got: Any) -> bool:
    if isinstance(want, float):
        return (isinstance(got, (int, float)) and not isinstance(got, bool)
                and math.isclose(want, float(got), rel_tol=1e-6, abs_tol=1e-6))
    if isinstance(want, list):
        return (isinstance(got, list) and len(got) == len(want)
                and all(same_value(w, g) for w, g in zip(want, got)))
    return type(want) is type(got) and want == got


def diff_row(want: Dict[str, Any], got: Any) -> Optional[str]:
    if not isinstance(got, dict):
        return f"row is {type(got).__name__}, not an object: {got!r}"
    problems = []
    for k in sorted(set(want) | set(got)):
        if k not in got:
            problems.append(f"missing field {k!r}")
        elif k not in want:
            problems.append(f"unexpected field {k!r}={got[k]!r}")
        elif not same_value(want[k], got[k]):
            problems.append(f"{k}: want {want[k]!r}, got {got[k]!r}")
    return "; ".join(problems) or None


def short(obj: Any, limit: int = 600) -> str:
    s = repr(obj)
    return s if len(s) <= limit else s[:limit] + "...(truncated)"


def is_unauthorized(status: Any, code: Any, text: str) -> bool:
    t = text.lower()
    return (status == 401 or code == 1000001 or str(code).lower().startswith("unauthorized")
            or "1000001" in t or "unauthorized" in t or "401" in t)


# --------------------------------------------------------------------------- V2


def run_v2(rep: Report, args: argparse.Namespace, host: str, scheme: str) -> None:
    from vikingdb import IAM, RequestOptions
    from vikingdb.vector import (
        DeleteDataRequest,
        FetchDataInCollectionRequest,
        UpdateDataRequest,
        UpsertDataRequest,
        VikingDB,
    )
    from vikingdb.vector.exceptions import VikingVectorException

    # One attempt only: the SDK otherwise retries EVERY error 3x (0.5 s, 1 s sleeps),
    # which would both slow the negative test and hide first-attempt failures.
    opts = lambda: RequestOptions(max_attempts=1)  # noqa: E731
    rows = make_rows(args.run_id)
    ids = [r["id"] for r in rows]
    name = args.v2_collection
    state: Dict[str, Any] = {}

    def construct() -> str:
        # The constructor does an UNSIGNED GET {scheme}://{host}/api/vikingdb/Ping
        # (no timeout!) and raises VikingConnectionException unless HTTP 200.
        state["client"] = VikingDB(host=host, region=args.region,
                                   auth=IAM(ak=args.ak, sk=args.sk),
                                   scheme=scheme, timeout=args.timeout)
        return "GET /api/vikingdb/Ping -> 200"

    if not rep.run("v2 ping: VikingDB(...) constructor", construct):
        for c in ("upsert", "update", "delete", "fetch_in_collection", "wrong-sk"):
            rep.skip(f"v2 {c}", "client construction (ping) failed")
        return
    coll = state["client"].collection(collection_name=name)

    def check_envelope(resp: Any, what: str) -> str:
        expect(resp.code == "Success", f"{what}: code={resp.code!r}, want 'Success'; response={short(resp)}")
        expect(bool(resp.request_id), f"{what}: empty request_id; response={short(resp)}")
        return f"code={resp.code} request_id={resp.request_id}"

    def upsert() -> str:
        resp = coll.upsert(UpsertDataRequest(data=rows), request_options=opts())
        return check_envelope(resp, "upsert")

    def update() -> str:
        resp = coll.update(UpdateDataRequest(data=[{"id": ids[1], "title": UPDATED_TITLE}]),
                           request_options=opts())
        return check_envelope(resp, "update")

    def delete() -> str:
        resp = coll.delete(DeleteDataRequest(ids=[ids[2]]), request_options=opts())
        return check_envelope(resp, "delete")

    def fetch() -> str:
        resp = coll.fetch(FetchDataInCollectionRequest(ids=ids), request_options=opts())
        check_envelope(resp, "fetch_in_collection")
        expect(resp.result is not None, f"result is null; response={short(resp)}")
        want = expected_final(rows)
        got = {}
        for item in resp.result.items:
            expect(item.id not in got, f"id {item.id!r} returned twice")
            got[item.id] = item.fields
        expect(set(got) == set(want),
               f"fetched ids {sorted(got, key=str)}, want {sorted(want)}; response={short(resp)}")
        for pk, row in want.items():
            d = diff_row(row, got[pk])
            expect(d is None, f"row {pk}: {d}")
        expect(list(resp.result.ids_not_exist) == [ids[2]],
               f"ids_not_exist={resp.result.ids_not_exist!r}, want {[ids[2]]!r}")
        return f"{len(got)} rows match, ids_not_exist={resp.result.ids_not_exist}"

    rep.run("v2 upsert 3 rows (POST /api/vikingdb/data/upsert)", upsert)
    rep.run("v2 update title of row 2 (POST /api/vikingdb/data/update)", update)
    rep.run("v2 delete row 3 (POST /api/vikingdb/data/delete)", delete)
    rep.run("v2 fetch_in_collection returns exactly rows 1+2 (POST /api/vikingdb/data/fetch_in_collection)", fetch)

    intruder = {"id": f"x-{args.run_id}", "title": "must not land", "score": 0.0,
                "tags": [], "vec": [0.0, 0.0, 0.0, 0.0]}

    def wrong_sk() -> str:
        # Ping is unsigned, so a bad key is only noticed on the first data call.
        bad = VikingDB(host=host, region=args.region,
                       auth=IAM(ak=args.ak, sk=args.sk + "-wrong"),
                       scheme=scheme, timeout=args.timeout)
        try:
            resp = bad.collection(collection_name=name).upsert(
                UpsertDataRequest(data=[intruder]), request_options=opts())
        except VikingVectorException as exc:
            expect(exc.status_code == 401,
                   f"refused, but http_status={exc.status_code!r} (want 401): {describe_exc(exc)}")
            expect(is_unauthorized(exc.status_code, exc.code, str(exc)), describe_exc(exc))
            return f"VikingVectorException http_status=401 code={exc.code!r} message={exc.message!r}"
        raise CheckFailed(f"upsert with wrong SK was accepted: {short(resp)}")

    def intruder_absent() -> str:
        resp = coll.fetch(FetchDataInCollectionRequest(ids=[intruder["id"]]), request_options=opts())
        items = resp.result.items if resp.result else []
        expect(not items, f"refused write landed anyway: {short(items)}")
        return "refused row not stored"

    if rep.run("v2 wrong secret key is refused with 401", wrong_sk):
        rep.run("v2 refused upsert did not write", intruder_absent)
    else:
        rep.skip("v2 refused upsert did not write", "wrong-sk check failed")


# --------------------------------------------------------------------------- V1


def run_v1(rep: Report, args: argparse.Namespace, host: str, scheme: str) -> None:
    from volcengine.viking_db import Collection, CollectionClient, Data, VikingDBService
    from volcengine.viking_db.exception import UnauthorizedException, VikingDBServerException

    rows = make_rows(args.run_id)
    ids = [r["id"] for r in rows]
    name = args.v1_collection
    state: Dict[str, Any] = {}

    def new_service(sk: str) -> Any:
        # NB: VikingDBService is a process-wide SINGLETON (__new__ returns the same
        # object); every construction re-runs __init__ (and its signed ping) and
        # overwrites the credentials of the existing instance.
        return VikingDBService(host=host, region=args.region, ak=args.ak, sk=sk, scheme=scheme,
                               connection_timeout=args.timeout, socket_timeout=args.timeout)

    def construct() -> str:
        state["svc"] = new_service(args.sk)
        return "signed GET /api/viking_db/data/ping -> 200"

    if not rep.run("v1 ping: VikingDBService(...) constructor", construct):
        for c in ("upsert_data", "update_data", "delete_data", "fetch_data", "wrong-sk"):
            rep.skip(f"v1 {c}", "service construction (ping) failed")
        return
    svc = state["svc"]
    # Built directly: get_collection() would call the control-plane GET /api/collection/info.
    coll = Collection(name, [], svc, "id")

    def upsert() -> str:
        # A list of Data whose TTL is None -> one request with "ttl": null.
        coll.upsert_data([Data(dict(r)) for r in rows], retry=False)
        return "no exception"

    def update() -> str:
        # A single Data -> "ttl": 0.
        coll.update_data(Data({"id": ids[1], "title": UPDATED_TITLE}), retry=False)
        return "no exception"

    def delete() -> str:
        # A scalar key -> "primary_keys": "<id>".
        coll.delete_data(ids[2], retry=False)
        return "no exception"

    def fetch_list() -> str:
        try:
            got_list = coll.fetch_data(ids, retry=False)  # list -> "primary_keys": [...]
        except (KeyError, IndexError, TypeError) as exc:
            raise CheckFailed(f"SDK could not read the rows ({describe_exc(exc)}); it needs "
                              "data = [{...}] with the primary key 'id' in every row")
        want = expected_final(rows)
        got: Dict[Any, Any] = {}
        for d in got_list:
            fields = d.fields
            if d.id == ids[2]:
                # Missing key: allowed only as a bare primary-key row (+ hint text).
                extra = {k: v for k, v in fields.items() if k in SCHEMA_FIELDS and k != "id"}
                expect(not extra, f"deleted row {ids[2]} still has data: {short(fields)}")
                continue
            expect(d.id not in got, f"id {d.id!r} returned twice")
            got[d.id] = fields
        expect(set(got) == set(want),
               f"fetched ids {sorted(got, key=str)}, want {sorted(want)}; "
               f"raw={short([x.fields for x in got_list])}")
        for pk, row in want.items():
            diff = diff_row(row, got[pk])
            expect(diff is None, f"row {pk}: {diff}")
        return f"{len(got)} rows match, deleted row absent"

    def fetch_single() -> str:
        try:
            d = coll.fetch_data(ids[0], retry=False)  # scalar -> SDK reads res["data"][0]
        except (KeyError, IndexError, TypeError) as exc:
            raise CheckFailed(f"SDK could not read data[0] ({describe_exc(exc)}); "
                              "fetch_data must answer data as a list even for one scalar key")
        diff = diff_row(rows[0], d.fields)
        expect(diff is None, f"row {ids[0]}: {diff}")
        return "data[0] matches"

    rep.run("v1 upsert_data 3 rows (POST /api/collection/upsert_data, ttl null)", upsert)
    rep.run("v1 update_data title of row 2 (POST /api/collection/update_data)", update)
    rep.run("v1 delete_data row 3 (POST /api/collection/del_data)", delete)
    rep.run("v1 fetch_data list returns exactly rows 1+2 (GET /api/collection/fetch_data)", fetch_list)
    rep.run("v1 fetch_data single key (GET /api/collection/fetch_data, scalar primary_keys)", fetch_single)

    if args.v1_collection_client:
        def client_fetch() -> str:
            cc = CollectionClient(name, host=host, region=args.region, ak=args.ak, sk=args.sk,
                                  scheme=scheme, connection_timeout=args.timeout,
                                  socket_timeout=args.timeout)
            got = {d.id: d.fields for d in cc.fetch_data(ids[:2], retry=False)}
            expect(set(got) == set(ids[:2]), f"ids via __primary_key: {sorted(got, key=str)}")
            return "replace_primay rows carry __primary_key"
        rep.run("v1 CollectionClient.fetch_data (replace_primay)", client_fetch)

    intruder = {"id": f"x-{args.run_id}", "title": "must not land", "score": 0.0,
                "tags": [], "vec": [0.0, 0.0, 0.0, 0.0]}

    def wrong_sk_data() -> str:
        svc.set_sk(args.sk + "-wrong")
        try:
            coll.upsert_data(Data(dict(intruder)), retry=False)
        except UnauthorizedException as exc:
            return f"UnauthorizedException: {exc}"
        except VikingDBServerException as exc:
            raise CheckFailed(f"refused, but not as code 1000001: {describe_exc(exc)}")
        finally:
            svc.set_sk(args.sk)
        raise CheckFailed("upsert_data with wrong SK was accepted")

    def intruder_absent() -> str:
        got = coll.fetch_data([intruder["id"]], retry=False)
        for d in got:
            extra = {k: v for k, v in d.fields.items() if k in SCHEMA_FIELDS and k != "id"}
            expect(not extra, f"refused write landed anyway: {short(d.fields)}")
        return "refused row not stored"

    def wrong_sk_ping() -> str:
        # Must be last: re-initialises the singleton with the bad key.
        try:
            new_service(args.sk + "-wrong")
        except Exception as exc:  # SDK wraps the 401 body: VikingDBException(1000028, ...)
            text = str(exc)
            expect(is_unauthorized(None, getattr(exc, "code", None), text),
                   f"refused, but no 401/1000001/unauthorized in error: {describe_exc(exc)}")
            return f"{type(exc).__name__}: {text}"
        raise CheckFailed("VikingDBService constructor ping with wrong SK was accepted")

    if rep.run("v1 wrong secret key is refused on upsert_data (UnauthorizedException 1000001)", wrong_sk_data):
        rep.run("v1 refused upsert_data did not write", intruder_absent)
    else:
        rep.skip("v1 refused upsert_data did not write", "wrong-sk check failed")
    rep.run("v1 wrong secret key is refused on the constructor ping", wrong_sk_ping)


# --------------------------------------------------------------------------- main


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--endpoint", required=True, help="http://127.0.0.1:PORT")
    p.add_argument("--ak", required=True)
    p.add_argument("--sk", required=True)
    p.add_argument("--region", default="cn-beijing")
    p.add_argument("--v2-collection", required=True)
    p.add_argument("--v1-collection", required=True)
    p.add_argument("--run-id", default=uuid.uuid4().hex[:8], help="suffix for row ids (default: random)")
    p.add_argument("--timeout", type=int, default=10, help="per-request SDK timeout, seconds")
    p.add_argument("--deadline", type=int, default=120,
                   help="abort the whole run after this many seconds (the V2 constructor ping has no timeout)")
    p.add_argument("--only", choices=("v1", "v2"), help="run just one SDK")
    p.add_argument("--v1-collection-client", action="store_true",
                   help="also check volcengine.viking_db.CollectionClient (replace_primay fetch)")
    args = p.parse_args(argv)

    u = urllib.parse.urlsplit(args.endpoint)
    if u.scheme not in ("http", "https") or not u.netloc or u.path not in ("", "/"):
        p.error(f"--endpoint must look like http://127.0.0.1:PORT, got {args.endpoint!r}")
    scheme, host = u.scheme, u.netloc

    if hasattr(signal, "SIGALRM") and args.deadline > 0:
        def on_deadline(*_: Any) -> None:
            print(f"FAIL global deadline of {args.deadline}s exceeded (emulator hung?)", flush=True)
            os._exit(1)
        signal.signal(signal.SIGALRM, on_deadline)
        signal.alarm(args.deadline)

    # The V1 SDK's Service.init() would read VOLC_ACCESSKEY/VOLC_SECRETKEY; the explicit
    # ak/sk win anyway, but keep the environment from confusing anyone reading logs.
    for var in ("VOLC_ACCESSKEY", "VOLC_SECRETKEY"):
        os.environ.pop(var, None)

    rep = Report()
    for gen, fn in (("v2", run_v2), ("v1", run_v1)):
        if args.only and args.only != gen:
            continue
        try:
            fn(rep, args, host, scheme)
        except Exception as exc:  # import errors, bugs in this script
            rep.fail(f"{gen} (harness)", describe_exc(exc))
            traceback.print_exc()

    print(f"SUMMARY passed={rep.passed} failed={rep.failed} skipped={rep.skipped}", flush=True)
    return 0 if rep.failed == 0 and rep.skipped == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
