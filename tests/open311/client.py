"""Drive huiying's Open311 GeoReport v2 endpoint with a real client library.

GETs go through `georeport` (PyPI, 0.3.1), in JSON and in XML (parsed by its xmltodict).
georeport has no POST; `three` (the other PyPI client) is Python 2 only, so the POST is sent as
it and the GeoReport v2 spec send it: form fields with `api_key` in the body.

Usage: client.py BASE_URL API_KEY — prints one JSON object with what it saw; exits non-zero
when the server answers something a client cannot use.
"""
import json
import sys

import requests
from georeport import GeoReport

base, key = sys.argv[1].rstrip("/"), sys.argv[2]
root = base + "/open311/v2"
seen = {}

for fmt in ("json", "xml"):
    g = GeoReport(root, api_key=key, output_format=fmt)
    services = g.get_service_list()
    seen[f"services_{fmt}"] = len(services)
    codes = [s["service_code"] for s in services]
    assert "complaint.water" in codes, codes[:5]
    d = g.get_service_definition("complaint.water")
    seen[f"definition_{fmt}"] = d["service_code"]

disc = requests.get(root + "/discovery.json").json()
seen["discovery"] = disc["endpoints"][0]["specification"]

form = {
    "api_key": key,
    "service_code": "complaint.water",
    "description": "朝阳区望京西园三区自来水发黄，已经三天了",
    "address_string": "北京市朝阳区望京西园三区",
    "lat": "39.9960",
    "long": "116.4700",
    "email": "li@example.org",
    "first_name": "Li",
    "last_name": "Lei",
    "media_url": "https://example.org/photo.jpg",
}
r = requests.post(root + "/requests.json", data=form)
assert r.status_code == 201, (r.status_code, r.text)
created = r.json()[0]["service_request_id"]
seen["created"] = created

g = GeoReport(root, api_key=key, output_format="json")
one = g.get_service_request(created)
seen["one"] = {k: one.get(k) for k in (
    "service_request_id", "status", "service_code", "agency_responsible", "address",
    "requested_datetime", "expected_datetime", "lat", "long", "media_url")}
seen["one_keys"] = sorted(one.keys())
opened = g.get_service_requests(status="open")
seen["open_ids"] = [x["service_request_id"] for x in opened]
closed = g.get_service_requests(status="closed")
seen["closed_ids"] = [x["service_request_id"] for x in closed]
seen["by_code"] = len(g.get_service_requests(service_code="complaint.water"))
seen["by_other_code"] = len(g.get_service_requests(service_code="praise.education"))
x = GeoReport(root, api_key=key, output_format="xml").get_service_request(created)
seen["one_xml"] = {"service_request_id": x["service_request_id"], "status": x["status"]}

bad = dict(form)
del bad["service_code"]
r = requests.post(root + "/requests.json", data=bad)
seen["missing_code"] = [r.status_code, r.json()]
bad_key = dict(form, api_key="not-a-key")
r = requests.post(root + "/requests.xml", data=bad_key)
seen["bad_key"] = [r.status_code, r.text]
r = requests.get(root + "/requests/19990101-0001.json")
seen["unknown"] = [r.status_code, r.json()]
print(json.dumps(seen, ensure_ascii=False))
