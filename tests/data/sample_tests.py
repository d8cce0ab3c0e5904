"""The tests whose run made python-subunit-v2.subunit, a subunit v2 stream written by the
reference implementation (python-subunit 1.4.6), for the Refstack tests:

    python -m subunit.run sample_tests > python-subunit-v2.subunit

One success, one failure, one skip and one expected failure.
"""
import unittest

class ServersTest(unittest.TestCase):
    def test_create_server(self):
        self.assertTrue(True)

    def test_reboot_server(self):
        self.assertEqual(1, 2, "the server did not come back")

    @unittest.skip("no second network")
    def test_attach_interface(self):
        pass

    @unittest.expectedFailure
    def test_known_bug(self):
        self.fail("bug 1")
