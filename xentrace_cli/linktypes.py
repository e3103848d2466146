"""Link-layer header types (LINKTYPE_* numbers of pcap and pcapng): the one table of them.

Numbers and names follow https://www.tcpdump.org/linktypes.html; the short names are those
``capinfos`` prints. :data:`DECODED` lists the link types :mod:`.sources.decode`
understands;
frames of any other link type stay in the packet table without IP fields, and are counted in a
warning.
"""

from __future__ import annotations

NULL = 0            #: BSD loopback: 4-byte address family in the writer's host byte order
ETHERNET = 1
RAW_BSD_12 = 12     #: DLT_RAW as OpenBSD/BSD/OS write it in the header (raw IPv4/IPv6)
RAW_BSD_14 = 14     #: DLT_RAW on some BSDs
LOOP = 108          #: OpenBSD loopback: 4-byte address family, big-endian
RAW = 101           #: raw IPv4 or IPv6, version from the first nibble
SLL = 113           #: Linux cooked capture v1 (16-byte header)
IPNET = 226         #: Solaris ipnet (24-byte header)
IPV4 = 228
IPV6 = 229
SLL2 = 276          #: Linux cooked capture v2 (20-byte header)

#: number -> short name (as capinfos prints it) for the link types worth naming.
NAMES: dict[int, str] = {
    NULL: "null",
    ETHERNET: "ether",
    2: "xeth",
    6: "tr",
    9: "ppp",
    10: "fddi",
    RAW_BSD_12: "rawip",
    RAW_BSD_14: "rawip",
    50: "ppp-hdlc",
    51: "pppoe",
    RAW: "rawip",
    104: "chdlc",
    105: "ieee-802-11",
    107: "frelay",
    LOOP: "loop",
    SLL: "linux-sll",
    127: "ieee-802-11-radiotap",
    147: "user0",
    192: "ppi",
    IPNET: "ipnet",
    IPV4: "rawip4",
    IPV6: "rawip6",
    239: "nflog",
    253: "netlink",
    SLL2: "linux-sll2",
}

#: Link types whose frames are decoded down to IP.
DECODED: frozenset[int] = frozenset(
    {NULL, ETHERNET, RAW_BSD_12, RAW_BSD_14, LOOP, RAW, SLL, IPNET, IPV4, IPV6, SLL2}
)

#: Ethertypes (and SLL protocol values) the decoder follows.
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = (0x8100, 0x88A8, 0x9100)  #: 802.1Q, 802.1ad (QinQ), legacy QinQ

#: BSD address families meaning IPv6 in a NULL/LOOP header (NetBSD/OpenBSD 24, FreeBSD 28,
#: Darwin 30); IPv4 is 2 everywhere.
AF_INET = 2
AF_INET6_BSD = (24, 28, 30)
#: Solaris address families in an ipnet header.
IPNET_AF_INET = 2
IPNET_AF_INET6 = 26


def name(linktype: int) -> str:
    """Short name of a link type (``linktype-N`` when unnamed)."""
    return NAMES.get(int(linktype), f"linktype-{int(linktype)}")
