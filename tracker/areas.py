"""The 22 areas a tour can visit: the 21 wellbeing services counties and the City of Helsinki.

Area ids are the slugs used in settings (`[[tour.stops]] area = "pirkanmaa"`). Names and brands
come from the counties' own sites and Act 616/2021. The text-recognition gazetteer (municipalities,
inflected forms) builds on this table.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Area:
    id: str
    name_fi: str
    """Short Finnish name of the region (Pirkanmaa), not the county's full legal name."""
    name_sv: str
    name_en: str
    county_fi: str
    """Full Finnish name of the organisation (Pirkanmaan hyvinvointialue)."""
    county_sv: str
    main_city_fi: str
    main_city_sv: str
    brands: tuple[str, ...] = ()

    def name(self, language: str) -> str:
        return {"fi": self.name_fi, "sv": self.name_sv}.get(language, self.name_en)


_A = Area
AREAS: dict[str, Area] = {
    a.id: a
    for a in (
        _A("ita-uusimaa", "Itä-Uusimaa", "Östra Nyland", "East Uusimaa",
           "Itä-Uudenmaan hyvinvointialue", "Östra Nylands välfärdsområde", "Porvoo", "Borgå"),
        _A("keski-uusimaa", "Keski-Uusimaa", "Mellersta Nyland", "Central Uusimaa",
           "Keski-Uudenmaan hyvinvointialue", "Mellersta Nylands välfärdsområde",
           "Hyvinkää", "Hyvinge", ("Keusote",)),
        _A("lansi-uusimaa", "Länsi-Uusimaa", "Västra Nyland", "West Uusimaa",
           "Länsi-Uudenmaan hyvinvointialue", "Västra Nylands välfärdsområde", "Espoo", "Esbo",
           ("LUVN",)),
        _A("vantaa-kerava", "Vantaa ja Kerava", "Vanda och Kervo", "Vantaa and Kerava",
           "Vantaan ja Keravan hyvinvointialue", "Vanda och Kervo välfärdsområde",
           "Vantaa", "Vanda", ("Vake",)),
        _A("varsinais-suomi", "Varsinais-Suomi", "Egentliga Finland", "Southwest Finland",
           "Varsinais-Suomen hyvinvointialue", "Egentliga Finlands välfärdsområde",
           "Turku", "Åbo", ("Varha",)),
        _A("satakunta", "Satakunta", "Satakunta", "Satakunta",
           "Satakunnan hyvinvointialue", "Satakunta välfärdsområde", "Pori", "Björneborg",
           ("Satasote",)),
        _A("kanta-hame", "Kanta-Häme", "Egentliga Tavastland", "Kanta-Häme",
           "Kanta-Hämeen hyvinvointialue", "Egentliga Tavastlands välfärdsområde",
           "Hämeenlinna", "Tavastehus", ("Oma Häme",)),
        _A("pirkanmaa", "Pirkanmaa", "Birkaland", "Pirkanmaa",
           "Pirkanmaan hyvinvointialue", "Birkalands välfärdsområde", "Tampere", "Tammerfors",
           ("Pirha",)),
        _A("paijat-hame", "Päijät-Häme", "Päijänne-Tavastland", "Päijät-Häme",
           "Päijät-Hämeen hyvinvointialue", "Päijänne-Tavastlands välfärdsområde",
           "Lahti", "Lahtis"),
        _A("kymenlaakso", "Kymenlaakso", "Kymmenedalen", "Kymenlaakso",
           "Kymenlaakson hyvinvointialue", "Kymmenedalens välfärdsområde", "Kouvola", "Kouvola"),
        _A("etela-karjala", "Etelä-Karjala", "Södra Karelen", "South Karelia",
           "Etelä-Karjalan hyvinvointialue", "Södra Karelens välfärdsområde",
           "Lappeenranta", "Villmanstrand", ("Eksote",)),
        _A("etela-savo", "Etelä-Savo", "Södra Savolax", "South Savo",
           "Etelä-Savon hyvinvointialue", "Södra Savolax välfärdsområde", "Mikkeli", "S:t Michel",
           ("Eloisa",)),
        _A("pohjois-savo", "Pohjois-Savo", "Norra Savolax", "North Savo",
           "Pohjois-Savon hyvinvointialue", "Norra Savolax välfärdsområde", "Kuopio", "Kuopio"),
        _A("pohjois-karjala", "Pohjois-Karjala", "Norra Karelen", "North Karelia",
           "Pohjois-Karjalan hyvinvointialue", "Norra Karelens välfärdsområde",
           "Joensuu", "Joensuu", ("Siun sote",)),
        _A("keski-suomi", "Keski-Suomi", "Mellersta Finland", "Central Finland",
           "Keski-Suomen hyvinvointialue", "Mellersta Finlands välfärdsområde",
           "Jyväskylä", "Jyväskylä", ("Hyvaks",)),
        _A("etela-pohjanmaa", "Etelä-Pohjanmaa", "Södra Österbotten", "South Ostrobothnia",
           "Etelä-Pohjanmaan hyvinvointialue", "Södra Österbottens välfärdsområde",
           "Seinäjoki", "Seinäjoki", ("Hyvaep",)),
        _A("pohjanmaa", "Pohjanmaa", "Österbotten", "Ostrobothnia",
           "Pohjanmaan hyvinvointialue", "Österbottens välfärdsområde", "Vaasa", "Vasa"),
        _A("keski-pohjanmaa", "Keski-Pohjanmaa", "Mellersta Österbotten", "Central Ostrobothnia",
           "Keski-Pohjanmaan hyvinvointialue", "Mellersta Österbottens välfärdsområde",
           "Kokkola", "Karleby", ("Soite",)),
        _A("pohjois-pohjanmaa", "Pohjois-Pohjanmaa", "Norra Österbotten", "North Ostrobothnia",
           "Pohjois-Pohjanmaan hyvinvointialue", "Norra Österbottens välfärdsområde",
           "Oulu", "Uleåborg", ("Pohde",)),
        _A("kainuu", "Kainuu", "Kajanaland", "Kainuu",
           "Kainuun hyvinvointialue", "Kajanalands välfärdsområde", "Kajaani", "Kajana"),
        _A("lappi", "Lappi", "Lappland", "Lapland",
           "Lapin hyvinvointialue", "Lapplands välfärdsområde", "Rovaniemi", "Rovaniemi",
           ("Lapha",)),
        _A("helsinki", "Helsinki", "Helsingfors", "Helsinki",
           "Helsingin kaupunki", "Helsingfors stad", "Helsinki", "Helsingfors"),
    )
}


def get_area(area_id: str) -> Area:
    """The area with this id, or KeyError with the closest known ids in the message."""
    try:
        return AREAS[area_id]
    except KeyError:
        raise KeyError(unknown_area_message(area_id)) from None


def unknown_area_message(area_id: str) -> str:
    close = difflib.get_close_matches(str(area_id).lower(), AREAS, n=1)
    if close:
        return f"unknown area id '{area_id}' (did you mean '{close[0]}'?)"
    return f"unknown area id '{area_id}'; known ids: {', '.join(AREAS)}"
