import CustodianCore
import Testing

@Suite("Exact decimal amounts")
struct AmountTests {
    @Test("the wire grammar ^(0|[1-9][0-9]*)(\\.[0-9]+)?$ and nothing else")
    func grammar() {
        for good in ["0", "1", "150", "150.0", "0.000001", "10.50", String(repeating: "9", count: 78)] {
            #expect(Amount(good) != nil, "\(good)")
        }
        for bad in [
            "", "01", "00", "-1", "-0", "+3", ".5", "5.", "1e2", "1E2", " 1", "1 ", "0x10", "1,5", "١",
            String(repeating: "9", count: 79), "1." + String(repeating: "0", count: 79),
        ] {
            #expect(Amount(bad) == nil, "\(bad)")
        }
    }

    @Test("values, not strings: 150 == 150.0 == 150.000; sums and differences are exact")
    func arithmetic() throws {
        let a = try #require(Amount("150"))
        #expect(a == Amount("150.0"))
        #expect(a == Amount("150.000"))
        #expect(try #require(Amount("75.5")) + #require(Amount("74.499999")) != a)
        #expect(try #require(Amount("75.5")) + #require(Amount("74.5")) == a)
        #expect((try #require(Amount("0.1")) - #require(Amount("0.3"))).description == "-0.2")
        #expect(try #require(Amount("100.000001")) > #require(Amount("100")))
        #expect(try #require(Amount("1.50")).fractionDigits == 1)
        let huge = try #require(Amount(String(repeating: "9", count: 78)))
        #expect((huge + huge).description == "1" + String(repeating: "9", count: 77) + "8")
    }
}
