"""Bad input gets a 4xx in the product's own shape, never a 5xx, and every body has a size
limit: one table of the inputs that used to fail (an oversized CSV cell, an export request
for no known entity, JSON values of the wrong type, bodies far over the limit, very long
addresses)."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from typing import Any

import pytest

MB = 1024 * 1024
LONG_QUERY = "q=" + "x" * 5000


def _csv_with_a_huge_cell(sam: Any, org: Any) -> Any:
    content = b"name,notes\nHuge GmbH," + b"x" * (12 * MB) + b"\n"
    return sam.post("/import", data={"csrf_token": sam.csrf,
                                     "file": (io.BytesIO(content), "clients.csv")},
                    content_type="multipart/form-data")


def _export_request_for_a_planet(sam: Any, org: Any) -> Any:
    return sam.post("/exports/requests", data={"csrf_token": sam.csrf, "entity": "planet",
                                               "rows": "-5", "reason": "Quarterly mailing list"})


def _activity(org: Any) -> str:
    return str(org.records[next(e for e in org.records if e.value == "activity")][0])


def _done_as_text(api: Any, org: Any) -> Any:
    return api.patch(f"/api/v1/activities/{_activity(org)}", json={"done": "yes"})


def _owner_as_text(api: Any, org: Any) -> Any:
    return api.patch(f"/api/v1/activities/{_activity(org)}", json={"owner_id": "1"})


def _huge_json(api: Any, org: Any) -> Any:
    return api.post("/api/v1/accounts", data=b'{"name": "' + b"x" * (10 * MB) + b'"}',
                    content_type="application/json")


def _huge_form(sam: Any, org: Any) -> Any:
    return sam.post("/accounts/new", data={"csrf_token": sam.csrf, "name": "x" * (10 * MB)})


def _long_api_address(api: Any, org: Any) -> Any:
    return api.get("/api/v1/accounts?" + LONG_QUERY)


def _long_page_address(sam: Any, org: Any) -> Any:
    return sam.get("/accounts?" + LONG_QUERY)


#: input -> (who sends it: "web" or "api", the status it must get, what the answer must say)
CASES = {
    "CSV with a 12 MB cell": (_csv_with_a_huge_cell, "web", 400, "longer than"),
    "export request for entity=planet, rows=-5": (_export_request_for_a_planet, "web", 400,
                                                  "Choose what to export"),
    'PATCH activity {"done": "yes"}': (_done_as_text, "api", 422, "true or false"),
    'PATCH activity {"owner_id": "1"}': (_owner_as_text, "api", 422, "whole number"),
    "10 MB JSON body": (_huge_json, "api", 413, "1 MB"),
    "10 MB form body": (_huge_form, "web", 413, "1 MB"),
    "5,000-character API address": (_long_api_address, "api", 414, "too long"),
    "5,000-character page address": (_long_page_address, "web", 414, "too long"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_a_4xx_in_the_products_shape(app, org, login, case):
    send, who, status, says = CASES[case]
    client = login("sam") if who == "web" else org.api(app, "sam")
    response = send(client, org)
    body = response.get_data(as_text=True)
    assert response.status_code == status, (response.status_code, body[:300])
    assert says in body
    if who == "api":
        error = response.get_json()["error"]
        assert error["code"] and says in error["message"]
    else:
        assert "<html" in body.lower() and "Traceback" not in body


def test_the_server_lets_long_addresses_reach_the_apps_own_page(start_live_server):
    """gunicorn's own limit would answer a bare 414; the app's page says what to do."""
    base = start_live_server()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/accounts?{LONG_QUERY}", timeout=10)  # noqa: S310
    assert refused.value.code == 414
    assert "too long" in refused.value.read().decode()
