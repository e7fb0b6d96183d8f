#!/usr/bin/env python3
"""Reads every page of the list in order, page=1, 2, ... until has_more is
false, on one kept-alive connection, as an integration that syncs all
customers does. Prints: seconds pages customers."""
import http.client
import sys
import time


def main():
    host, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    conn = http.client.HTTPConnection(host, port)
    headers = {"Authorization": f"Token {key}"}
    pages = customers = 0
    started = time.monotonic()
    while True:
        pages += 1
        conn.request("GET", f"/api/v1/customers?page={pages}", headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            sys.exit(f"page {pages} answered {response.status}: {body[:200]!r}")
        customers += body.count(b'{"id":')
        if body.startswith(b'{"has_more":false'):
            break
    print(f"{time.monotonic() - started:.2f} {pages} {customers}")


if __name__ == "__main__":
    main()
