from lrlab.cli import main

main()
