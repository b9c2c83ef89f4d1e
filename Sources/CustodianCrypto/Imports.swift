import CustodianCore

typealias CustodianCoreHex = CustodianCore.Hex
