"""The dashboard's files (a package only so that they ship in the wheel as package data)."""
