"""ScribbleSup XML text for tests: `<polygon><tag>name</tag><point><X/><Y/></point>...` per stroke."""


def scribble_xml(strokes, size) -> str:
    """strokes [(tag, [(x, y), ...])], size (width, height)."""
    polygons = "".join(
        f"<polygon><tag>{tag}</tag>" + "".join(f"<point><X>{x}</X><Y>{y}</Y></point>" for x, y in pts) + "</polygon>"
        for tag, pts in strokes)
    return (f"<annotation><filename>a.jpg</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
            f"</size><segmented>1</segmented>{polygons}</annotation>")
