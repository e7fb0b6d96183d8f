#!/usr/bin/env python3
"""Writes N customers as JSON Lines on standard output: Finnish names in
random combinations, so that the list order is not the insertion order."""
import random
import sys

FIRST = ["Matti", "Maija", "Aino", "Eero", "Äijä", "Öllö", "Juha", "Sanna", "Pekka", "Liisa",
         "Antti", "Kaisa", "Ville", "Elina", "Timo", "Heidi", "Jari", "Minna", "Mikko", "Satu"]
LAST = ["Virtanen", "Korhonen", "Mäkinen", "Nieminen", "Mäkelä", "Hämäläinen", "Laine",
        "Heikkinen", "Koskinen", "Järvinen", "Lehtonen", "Lehtinen", "Saarinen", "Salminen",
        "Heinonen", "Niemi", "Heikkilä", "Kinnunen", "Salonen", "Turunen", "Åberg", "Öhman",
        "Wikström", "Zetterberg", "Ärväs"]
CITIES = [("Helsinki", "00100"), ("Espoo", "02100"), ("Tampere", "33100"), ("Turku", "20100"),
          ("Oulu", "90100"), ("Jyväskylä", "40100")]


def main():
    n = int(sys.argv[1])
    rng = random.Random(42)
    out = sys.stdout
    lines = []
    for i in range(n):
        first = rng.choice(FIRST)
        last = rng.choice(LAST)
        city, postcode = rng.choice(CITIES)
        company = f'"Yritys {i % 997} Oy"' if i % 5 == 0 else "null"
        lines.append(
            f'{{"email":"asiakas{i}@example.com","customer_locale":"fi_FI","address":'
            f'{{"firstname":"{first}","lastname":"{last}{rng.randrange(1000)}","company":{company},'
            f'"company_id":null,"address":"Testikatu {i % 200}","city":"{city}",'
            f'"postcode":"{postcode}","phone":"040{i:07d}","country":"FI"}}}}\n')
        if len(lines) == 10000:
            out.write("".join(lines))
            lines.clear()
    out.write("".join(lines))


if __name__ == "__main__":
    main()
