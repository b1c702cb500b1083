"""Make ``db/common_passwords.txt``, the password blocklist, from well-known patterns (no download).

Run ``python tests/db/make_common_passwords.py`` to write the file; ``tests/db/test_passwords.py``
checks that the shipped file is exactly what this script makes, so the list can be reviewed and
extended here.

What it holds (lower case, one a line):

* the words most common passwords are made of (the top of every published breach list:
  ``password``, ``qwerty``, ``welcome``, ``letmein``, ``iloveyou``, ``dragon``, ``monkey``, …), names of
  seasons and months, and this application's own words (``alliance``, ``monitor``, ``therapist``,
  ``clinic``, …), which attackers try first against a known application;
* each of them with the endings people add (``123``, ``1234``, ``!``, years 2015-2030, ``2026!``, …)
  and doubled (``passwordpassword``), where that makes 12 characters or more;
* keyboard walks and digit runs (``qwertyuiopas``, ``1qaz2wsx3edc``, ``123456789012``, …) and
  phrases (``iloveyouforever``, ``letmeinplease``, ``thisismypassword``, …).

``db.auth.check_password_policy`` compares a password in lower case, without spaces, and its
"core" (the letters left after removing digits and symbols around it and undoing leet
spelling: ``P@ssw0rd2026!`` -> ``password``), with this list.
"""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "db" / "common_passwords.txt"


def _words(block: str) -> list[str]:
    return block.split()


WORDS = _words("""
password passwort motdepasse contrasena wachtwoord salasana haslo senha parola lozinka
qwerty qwertz azerty asdfgh zxcvbn qazwsx qwertyuiop asdfghjkl zxcvbnm
welcome letmein iloveyou trustno admin administrator root user guest login master
secret changeme default temp temporary test tester testing access passport pass
monkey dragon shadow sunshine princess football baseball basketball soccer hockey
superman batman spiderman starwars pokemon mustang ferrari porsche corvette harley
michael jennifer jordan michelle daniel thomas charlie robert hunter ranger buster
jessica ashley amanda joshua matthew andrew anthony william george maggie ginger
summer winter spring autumn january february march april june july august
september october november december monday friday sunday weekend holiday
flower freedom whatever nothing computer internet hello hellohello ninja mickey
killer hottie lovely loveme angel angels blessed jesus christ heaven faith
cookie chocolate banana orange apple cheese pepper coffee butterfly rainbow
tigger tiger lion eagle falcon phoenix wizard merlin magic matrix hacker
liverpool arsenal chelsea barcelona madrid juventus united city
success money dollar million lucky winner champion legend forever family
alliance monitor alliancemonitor therapist therapy supervisor clinic clinical
patient psychology psychologist counselling counseling counselor health
hospital doctor nurse medical streamlit manage research study questionnaire
office company business service support helpdesk itsupport system network
""")

ENDINGS = ["", "1", "12", "123", "1234", "12345", "123456", "!", "1!", "123!", "!!", "01", "007", "99"] + [
    str(y) for y in range(2015, 2031)] + [f"{y}!" for y in range(2020, 2031)]

WALKS = _words("""
qwertyuiopas qwertyuiopasdf qwertyuiop123 qwertyuiop1234 1qaz2wsx3edc 1qaz2wsx3edc4rfv
zaq12wsxcde3 zaq1zaq1zaq1 1q2w3e4r5t6y 1q2w3e4r5t6y7u8i q1w2e3r4t5y6 qazwsxedcrfv
asdfghjkl123 asdfghjkl1234 zxcvbnm12345 zxcvbnm123456 qwertyasdfgh asdfqwerzxcv
poiuytrewq12 mnbvcxzlkjhg 123qweasdzxc qweasdzxc123 abcdefghijkl abcdefghijklm
abcd1234abcd abc123abc123 aaaaaaaaaaaa 123456789012 1234567890123 12345678910 123456789101
098765432109 111111111111 000000000000 123123123123 121212121212 112233445566
147258369147 159357159357 987654321098 123454321123 12345qwert12 qwert12345qwert
""")

PHRASES = _words("""
iloveyouforever iloveyousomuch iloveyoubaby letmeinplease letmeinnow pleaseletmein
thisismypassword mypasswordis mynewpassword newpassword newpassword123 changemenow
changemeplease passwordpassword passwordpass welcometothejungle welcomehome welcomeback
whateverwhatever opensesame trustnoone nopassword forgotpassword ihatepasswords
correcthorsebatterystaple happybirthday goodmorning helloworld helloworld123
administrator123 adminadmin123 rootroot1234 testtest1234 guestguest123 useruser1234
""")


def generate() -> list[str]:
    """The blocklist, sorted and without duplicates."""
    words = set(WORDS)
    entries = set(words)
    for word in words:
        for ending in ENDINGS:
            for candidate in (word + ending, word * 2 + ending):
                if len(candidate) >= 12:
                    entries.add(candidate)
    entries.update(WALKS)
    entries.update(PHRASES)
    return sorted(e for e in entries if e)


def main() -> None:
    lines = ["# Common passwords and the words they are made of (lower case); made by",
             "# tests/db/make_common_passwords.py from well-known patterns. Used by db.auth.check_password_policy."]
    OUT.write_text("\n".join(lines + generate()) + "\n", encoding="utf-8")
    print(f"wrote {len(generate()):,} entries to {OUT}")


if __name__ == "__main__":
    main()
