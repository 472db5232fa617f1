//! Human names for common partition types. Unknown types simply have no name.

/// Name of a GPT type GUID (upper-case hyphenated), if well known.
pub fn gpt_type_name(guid_upper: &str) -> Option<&'static str> {
    Some(match guid_upper {
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => "EFI System",
        "21686148-6449-6E6F-744E-656564454649" => "BIOS boot",
        "024DEE41-33E7-11D3-9D69-0008C781F39F" => "MBR partition scheme",
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE" => "Microsoft reserved",
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => "Microsoft basic data",
        "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC" => "Windows recovery",
        "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3" => "Windows LDM metadata",
        "AF9B60A0-1431-4F62-BC68-3311714A69AD" => "Windows LDM data",
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4" => "Linux filesystem",
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => "Linux root (x86-64)",
        "933AC7E1-2EB4-4F13-B844-0E14E2AEF915" => "Linux home",
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => "Linux swap",
        "E6D6D379-F507-44C2-A23C-238F2A3DF928" => "Linux LVM",
        "A19D880F-05FC-4D3B-A006-743F0F84911E" => "Linux RAID",
        "CA7D7CCB-63ED-4C53-861C-1742536059CC" => "Linux LUKS",
        "BC13C2FF-59E6-4262-A352-B275FD6F7172" => "Linux extended boot",
        "48465300-0000-11AA-AA11-00306543ECAC" => "Apple HFS+",
        "7C3457EF-0000-11AA-AA11-00306543ECAC" => "Apple APFS",
        "516E7CB4-6ECF-11D6-8FF8-00022D09712B" => "FreeBSD data",
        _ => return None,
    })
}

/// Name of an MBR system byte, if well known.
pub fn mbr_type_name(byte: u8) -> Option<&'static str> {
    Some(match byte {
        0x01 => "FAT12",
        0x04 | 0x06 | 0x0e => "FAT16",
        0x05 | 0x0f | 0x85 => "Extended",
        0x07 => "HPFS/NTFS/exFAT",
        0x0b | 0x0c => "W95 FAT32",
        0x11 | 0x14 | 0x16 | 0x1b | 0x1c | 0x1e => "Hidden FAT",
        0x17 => "Hidden NTFS",
        0x27 => "Windows recovery",
        0x42 => "Windows dynamic",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x8e => "Linux LVM",
        0xa5 => "FreeBSD",
        0xa8 => "Apple UFS",
        0xaf => "Apple HFS",
        0xee => "GPT protective",
        0xef => "EFI System",
        0xfd => "Linux RAID",
        _ => return None,
    })
}
