from sbrun.cli import main

main()
